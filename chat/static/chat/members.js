// The members panel of a private room: who is in it, a "Message" (DM) button by each name,
// and for the room's owner or staff, adding and removing members.
//
// Receives: GET /rooms/<slug>/members {"owner", "members", "can_manage"}; the user's clicks.
// Hands on: POST /rooms/<slug>/members {"username"}, DELETE /rooms/<slug>/members/<name>,
//           onDirect(name) for a DM. A removed member's streams stop carrying the room on
//           the server's side (chat/gatekeeper.py); nothing here decides who may read.
// If it fails: the server's error is shown beside the form; the list is asked again.
import { api, roomUrl } from "./api.js";
import { element, button } from "./dom.js";

export class MembersPanel {
  constructor(root, { me, onDirect }) {
    this.root = root;
    this.me = me;
    this.onDirect = onDirect;
    this.room = null;
  }

  async show(room) {
    this.room = room?.is_private && !room.is_direct ? room.slug : null;
    this.root.hidden = true;
    this.root.replaceChildren();
    if (!this.room) return;
    const slug = this.room;
    const result = await api("GET", roomUrl(slug, "members"));
    if (!result.ok || slug !== this.room) return;
    this.draw(result.data);
  }

  draw(data) {
    const list = element("ul", "member-list");
    for (const name of data.members) {
      const item = element("li", "member");
      item.dataset.user = name;
      item.append(element("span", "member-name", name));
      if (name === data.owner) item.append(element("span", "badge", "owner"));
      if (name !== this.me.name) {
        const dm = button("dm", "Message", () => this.onDirect(name));
        dm.setAttribute("aria-label", `Direct message ${name}`);
        item.append(dm);
      }
      if (data.can_manage && name !== data.owner) {
        const remove = button("remove-member", "Remove", () => this.change("DELETE", `members/${encodeURIComponent(name)}`));
        remove.setAttribute("aria-label", `Remove ${name}`);
        item.append(remove);
      }
      list.append(item);
    }
    const heading = element("h2", "", `Members (${data.members.length}${data.has_more ? "+" : ""})`);
    this.root.replaceChildren(heading, list);
    if (data.can_manage) {
      const form = element("form", "add-member");
      const input = element("input");
      input.name = "username";
      input.required = true;
      input.setAttribute("aria-label", "Username to add");
      input.placeholder = "username";
      const add = element("button", "add", "Add member");
      add.type = "submit";
      const problem = element("p", "error");
      problem.setAttribute("role", "alert");
      problem.hidden = true;
      form.append(input, add, problem);
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        this.change("POST", "members", { username: input.value.trim() });
      });
      this.root.append(form);
    }
    this.root.hidden = false;
  }

  async change(method, tail, body) {
    const slug = this.room;
    const result = await api(method, roomUrl(slug, tail), body);
    if (slug !== this.room) return;
    const again = await api("GET", roomUrl(slug, "members"));
    if (again.ok && slug === this.room) this.draw(again.data);
    if (!result.ok) {
      const problem = this.root.querySelector(".add-member .error");
      if (problem) {
        problem.textContent = result.data.error;
        problem.hidden = false;
      }
    }
  }
}
