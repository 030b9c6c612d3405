// A message's text as DOM: links, `code`, fenced code, **bold**, *italic*, ~~strike~~,
// > quotes, lists and @mentions, the same for every writer (the API, psql, the admin),
// because it is rendered here from the stored text.
//
// Receives: a message's text (anyone's: untrusted) and the reader's name.
// Hands on: a DocumentFragment built with createElement and text nodes only.
// If it fails: there is nothing to lose; the text is the message, and a construct we do
//           not render (a heading, a table, raw HTML) is shown as the characters typed.
//
// Why markdown-it's tokens and not its HTML: markdown-it (vendor/markdown-it, MIT, version
// in README.md) parses; we walk its token stream and build each element ourselves from a
// fixed list of tags, user text only ever as text nodes. No HTML string is produced, so
// there is nothing to sanitize and no DOMPurify to trust: an element or attribute not
// named below cannot appear, whatever the text says. The CSP (script-src 'self') is the
// second wall.
import markdownit from "./vendor/markdown-it/markdown-it.esm.min.js";
import { element, textWithMentions } from "./dom.js";

const LINK_SCHEMES = /^(https?:|mailto:)/i;

// "zero" is markdown-it's preset with every rule off: we turn on only what chat needs.
// No raw HTML (html: false), no entities (&amp; stays as typed), no images, headings,
// tables or indented code (four spaces in a chat line are just spaces).
const md = markdownit("zero", { html: false, linkify: true, breaks: true });
md.enable([
  "blockquote",
  "fence",
  "list",
  "backticks",
  "emphasis",
  "strikethrough",
  "link",
  "autolink",
  "linkify",
  "escape",
  "newline",
]);
md.linkify.set({ fuzzyEmail: false }); // "ann@example.com" stays text, as the mention rule sees it
md.validateLink = (url) => LINK_SCHEMES.test(url.trim());

// Block and inline containers: token type (without _open/_close) -> tag.
const CONTAINERS = {
  paragraph: "p",
  blockquote: "blockquote",
  bullet_list: "ul",
  ordered_list: "ol",
  list_item: "li",
  strong: "strong",
  em: "em",
  s: "s",
  link: "a",
};

// Only an absolute http(s) or mailto URL becomes a link, checked again here on the parsed
// URL (markdown-it normalizes first): anything else leaves the link's text as plain text.
function safeHref(raw) {
  try {
    const url = new URL(raw);
    return ["http:", "https:", "mailto:"].includes(url.protocol) ? url.href : null;
  } catch (err) {
    return null;
  }
}

function openElement(token) {
  const kind = token.type.replace(/_open$/, "");
  if (kind === "link") {
    const href = safeHref(token.attrGet("href") || "");
    if (!href) return element("span", "link-refused");
    const link = element("a");
    link.href = href;
    link.rel = "noopener noreferrer nofollow";
    link.target = "_blank";
    return link;
  }
  if (kind === "ordered_list") {
    const list = element("ol");
    const start = Number.parseInt(token.attrGet("start") || "1", 10);
    if (start > 1 && start < 1e6) list.start = start;
    return list;
  }
  return element(CONTAINERS[kind] || "span");
}

// Walk a token list (block level, or an inline token's children) into `root`.
function build(tokens, root, me) {
  const stack = [root];
  const top = () => stack[stack.length - 1];
  for (const token of tokens) {
    if (token.hidden && token.nesting !== 0) continue; // a tight list's paragraphs: no <p>
    if (token.nesting === 1) {
      const node = openElement(token);
      top().append(node);
      stack.push(node);
    } else if (token.nesting === -1) {
      if (stack.length > 1) stack.pop();
    } else if (token.type === "inline") {
      build(token.children || [], top(), me);
    } else if (token.type === "text") {
      top().append(textWithMentions(token.content, me));
    } else if (token.type === "code_inline") {
      top().append(element("code", "", token.content));
    } else if (token.type === "fence" || token.type === "code_block") {
      const pre = element("pre");
      pre.append(element("code", "", token.content.replace(/\n$/, "")));
      top().append(pre);
    } else if (token.type === "softbreak" || token.type === "hardbreak") {
      top().append("\n"); // shown by white-space: pre-wrap; keeps textContent the text's
    } else if (token.content) {
      top().append(token.content); // a token we do not style: its characters, as text
    }
  }
}

export function renderText(text, me) {
  const fragment = document.createDocumentFragment();
  build(md.parse(text, {}), fragment, me);
  return fragment;
}
