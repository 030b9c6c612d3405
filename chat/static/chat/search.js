// Search in the room page's header (and the same box at the top of the sidebar), and a room
// opened at a search result. A classic script
// beside the page's modules (app.js), run after them (deferred, in document order).
//
// Upstream:   GET /search (chat/search_api.py); the page's boot JSON (chat/pages.py): the
//             URLs, and `around` when the page was opened at a result.
// Downstream: a results panel under the search box; following a result loads its room
//             page at that message (/rooms/<slug>/?around=<id>), whose stream chat.js opens
//             from the cursor of that page as usual, so the room stays live from there.
// On failure: a refused or failed search shows the server's error in the panel; nothing is
//             kept, so searching again is the retry.
//
// Snippets arrive as plain-text parts ({"text", "match"}); each becomes a text node, the
// matches inside <mark>. Nothing here parses HTML (no innerHTML), so a message holding
// markup shows as the text it is. The shortcut "/" focuses the box unless the user is typing.
"use strict";

(() => {
  const PAGE = 20; // results per request; "More results" asks for the next page
  const boot = JSON.parse(document.getElementById("chat-boot").textContent);
  const head = document.querySelector(".room-head");
  if (!head) return;

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const pageSlug = typeof boot.room === "string" ? boot.room : boot.room.slug;

  function roomUrl(room) {
    // boot.urls.room is this room's page; every room's has the same shape
    return boot.urls.room.replace(`/${encodeURIComponent(pageSlug)}/`, `/${encodeURIComponent(room)}/`);
  }

  // -- the box and the panel ------------------------------------------------------------

  // A search form: a role=search <form> holding a labelled box that drives the one panel.
  function searchBox(className, id, placeholder) {
    const box = element("form", className);
    box.setAttribute("role", "search");
    const boxLabel = element("label", "visually-hidden", "Search messages");
    boxLabel.htmlFor = id;
    const boxInput = element("input");
    boxInput.id = id;
    boxInput.type = "search";
    boxInput.name = "q";
    boxInput.maxLength = 256;
    boxInput.placeholder = placeholder;
    boxInput.autocomplete = "off";
    boxInput.setAttribute("aria-controls", "search-results");
    box.append(boxLabel, boxInput);
    return [box, boxInput];
  }

  const [form, input] = searchBox("search", "search-q", "Search  /");
  const panel = element("section", "search-results");
  panel.id = "search-results";
  panel.hidden = true;
  panel.setAttribute("aria-label", "Search results");
  panel.setAttribute("aria-live", "polite");
  form.append(panel);
  head.insertBefore(form, document.getElementById("connection"));

  let query = "";
  let nextBefore = null;
  let groups = new Map(); // room -> <ol> of that room's results, in the order first seen

  async function fetchPage(before) {
    const url = new URL(boot.urls.search, window.location.href);
    url.searchParams.set("q", query);
    url.searchParams.set("limit", String(PAGE));
    if (before) url.searchParams.set("before", String(before));
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
      return response.ok ? data : { error: data.error || `HTTP ${response.status}` };
    } catch (err) {
      return { error: "network error: the server did not answer" };
    }
  }

  function snippet(parts) {
    const p = element("p", "snippet");
    for (const part of parts) p.append(part.match ? element("mark", "", part.text) : document.createTextNode(part.text));
    return p;
  }

  function resultItem(result) {
    const item = element("li", "search-result");
    const link = element("a");
    link.href = `${roomUrl(result.room)}?around=${result.id}`;
    link.dataset.id = String(result.id);
    const meta = element("span", "meta");
    meta.append(element("span", "author", result.author));
    const time = element("time", "time", new Date(result.created_at).toLocaleString());
    time.dateTime = result.created_at;
    meta.append(time);
    link.append(meta, snippet(result.snippet));
    item.append(link);
    return item;
  }

  function show(results) {
    for (const result of results) {
      let list = groups.get(result.room);
      if (!list) {
        const group = element("section", "search-room");
        group.append(element("h2", "", `#${result.room}`));
        list = element("ol");
        group.append(list);
        panel.insertBefore(group, panel.querySelector(".search-more"));
        groups.set(result.room, list);
      }
      list.append(resultItem(result));
    }
  }

  function moreButton() {
    const more = element("button", "search-more", "More results");
    more.type = "button";
    more.addEventListener("click", async () => {
      more.disabled = true;
      const data = await fetchPage(nextBefore);
      more.remove();
      if (data.error) return panel.append(element("p", "error", data.error));
      show(data.results);
      nextBefore = data.next_before;
      if (nextBefore) panel.append(moreButton());
    });
    return more;
  }

  async function search() {
    query = input.value.trim();
    groups = new Map();
    panel.replaceChildren(element("p", "hint", "Searching…"));
    panel.hidden = false;
    const data = await fetchPage(null);
    if (query !== input.value.trim()) return; // typed on meanwhile: a newer search follows
    panel.replaceChildren();
    if (data.error) return panel.append(element("p", "error", data.error));
    if (!data.results.length) return panel.append(element("p", "hint", "No messages found."));
    show(data.results);
    nextBefore = data.next_before;
    if (nextBefore) panel.append(moreButton());
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (input.value.trim()) search();
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      panel.hidden = true;
      input.blur();
    }
  });
  // -- the same search from the sidebar, when the page has one -----------------------------
  // A second box at the top of #sidebar (sidebar.js redraws only its lists, not this form):
  // Enter runs the search with its words, and the results open under the header's box.

  const sidebar = document.getElementById("sidebar");
  if (sidebar) {
    const [side, sideInput] = searchBox("search search-side", "sidebar-search-q", "Search messages");
    sidebar.prepend(side);
    side.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!sideInput.value.trim()) return;
      input.value = sideInput.value;
      search();
    });
  }

  document.addEventListener("keydown", (event) => {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    const typing = target.closest && target.closest("input, textarea, select, [contenteditable]");
    if (typing) return;
    event.preventDefault();
    input.focus();
    input.select();
  });

  // -- a room opened at a result --------------------------------------------------------

  if (boot.around) {
    const found = document.querySelector(`#messages > li[data-id="${boot.around}"]`);
    if (found) {
      found.classList.add("found");
      found.scrollIntoView({ block: "center" });
    }
    if (boot.has_newer) {
      const latest = element("a", "search-latest", "Newer messages: go to the latest");
      latest.href = boot.urls.room;
      document.getElementById("scroller").after(latest);
    }
  }
})();
