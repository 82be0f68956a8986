// A small, safe Markdown renderer for model answers: every character of the input is HTML-escaped
// first, then a few constructs are recognised (paragraphs, headings, bold, italic, inline and fenced
// code, lists, http/https links) and `[n]` citation markers become buttons. Nothing in the text can
// become a tag or an attribute of its own. Re-rendered as the answer streams in, so it is cheap.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

function inline(escaped) {
  const codes = [];
  // code spans are set aside first (as \u0000n\u0000, a character the text is stripped of): nothing in them is formatted
  let s = escaped.replace(/\u0000/g, "").replace(/`([^`\n]+)`/g, (_, code) => {
    codes.push(`<code>${code}</code>`);
    return `\u0000${codes.length - 1}\u0000`;
  });
  // links are set aside too, so that no later rule can reach into their href
  s = s.replace(/\[([^\]\n]+)\]\((https?:\/\/[^\s()[\]]+)\)/g, (_, label, url) => {
    codes.push(`<a href="${url}" target="_blank" rel="noopener noreferrer">${label}</a>`);
    return `\u0000${codes.length - 1}\u0000`;
  });
  s = s.replace(/\*\*([^*\n]+)\*\*/g, "<strong>$1</strong>").replace(/__([^_\n]+)__/g, "<strong>$1</strong>");
  s = s.replace(/(^|[^*\w])\*([^*\s][^*\n]*?)\*(?!\w)/g, "$1<em>$2</em>")
    .replace(/(^|[^_\w])_([^_\s][^_\n]*?)_(?!\w)/g, "$1<em>$2</em>");
  s = s.replace(/\[(\d{1,3})\](?!\()/g,
    (_, n) => `<button type="button" class="cite" data-cite="${n}" aria-label="source ${n}">${n}</button>`);
  while (/\u0000\d+\u0000/.test(s)) s = s.replace(/\u0000(\d+)\u0000/g, (_, i) => codes[Number(i)]); // a link may hold code
  return s;
}

const LIST_ITEM = /^\s*(?:([-*+])|(\d{1,9})[.)])\s+(.*)$/;

/** The HTML of `markdown` (a string): safe to assign to innerHTML. */
export function renderMarkdown(markdown) {
  const lines = escapeHtml(markdown).split(/\r?\n/);
  const out = [];
  let para = [];
  let list = null; // {tag, items}
  const flushPara = () => {
    if (para.length) out.push(`<p>${inline(para.join("\n")).replace(/\n/g, "<br>")}</p>`);
    para = [];
  };
  const flushList = () => {
    if (list) out.push(`<${list.tag}>${list.items.map((i) => `<li>${inline(i)}</li>`).join("")}</${list.tag}>`);
    list = null;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = line.match(/^\s*(```|~~~)\s*([\w+-]*)\s*$/);
    if (fence) {
      flushPara();
      flushList();
      const code = [];
      for (i++; i < lines.length && !lines[i].trim().startsWith(fence[1]); i++) code.push(lines[i]);
      const lang = fence[2] ? ` class="language-${fence[2]}"` : "";
      out.push(`<pre><code${lang}>${code.join("\n")}</code></pre>`); // an unclosed fence runs to the end (streaming)
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*?)\s*#*\s*$/);
    if (heading) {
      flushPara();
      flushList();
      const level = Math.min(6, heading[1].length + 2); // the page has h1/h2; an answer's headings sit below
      out.push(`<h${level}>${inline(heading[2])}</h${level}>`);
      continue;
    }
    const item = line.match(LIST_ITEM);
    if (item) {
      flushPara();
      const tag = item[1] ? "ul" : "ol";
      if (list && list.tag !== tag) flushList();
      if (!list) list = { tag, items: [] };
      list.items.push(item[3]);
      continue;
    }
    if (!line.trim()) {
      flushPara();
      flushList();
      continue;
    }
    if (list && /^\s{2,}\S/.test(line)) { // a continuation of the last item
      list.items[list.items.length - 1] += ` ${line.trim()}`;
      continue;
    }
    flushList();
    para.push(line);
  }
  flushPara();
  flushList();
  return out.join("");
}
