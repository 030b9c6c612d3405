// Editing and deleting one's own messages (or anyone's, for staff), in place in the list.
//
// Receives: a click on a message's Edit or Delete. Hands on: PATCH / DELETE to the message
// API, and the answer to the list (MessageList.upsert). The stream brings the same change to
// every other page; here it is applied at once, and the stream's echo is then a no-op.
import { api, roomUrl } from "./api.js";
import { element, button } from "./dom.js";

const messageUrl = (view, id) => `${roomUrl(view.room, "messages")}/${id}`;

export function startEdit(view, item) {
  const message = item.message;
  item.classList.add("editing");
  item.shown = null; // it shows an editor now: the next upsert must redraw it
  const form = element("form", "edit-form");
  const box = element("textarea");
  box.value = message.text;
  box.maxLength = 4000;
  box.setAttribute("aria-label", "Edit message");
  const save = element("button", "save", "Save");
  save.type = "submit";
  const cancel = button("cancel", "Cancel");
  const problem = element("p", "error");
  problem.setAttribute("role", "alert");
  problem.hidden = true;
  form.append(box, save, cancel, problem);
  item.querySelector(".text").replaceWith(form);
  item.querySelector(".actions")?.remove();

  const finish = () => {
    item.classList.remove("editing");
    view.upsert(item.message);
    view.items.get(message.id)?.querySelector(".edit")?.focus();
  };
  cancel.addEventListener("click", finish);
  box.addEventListener("keydown", (event) => {
    if (event.key === "Escape") finish();
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = await api("PATCH", messageUrl(view, message.id), { text: box.value });
    if (result.ok) {
      item.message = { ...result.data, reactions: item.message.reactions }; // text only changed
      finish();
    } else {
      problem.textContent = result.data.error;
      problem.hidden = false;
    }
  });
  box.focus();
}

export function confirmDelete(view, item, control) {
  if (control.dataset.armed !== "yes") {
    control.dataset.armed = "yes"; // a second press deletes: no modal dialog needed
    control.textContent = "Really delete?";
    setTimeout(() => {
      control.dataset.armed = "";
      control.textContent = "Delete";
    }, 5000);
    return;
  }
  api("DELETE", messageUrl(view, item.message.id)).then((result) => {
    if (result.ok) view.upsert(result.data);
    else control.textContent = result.data.error;
  });
}
