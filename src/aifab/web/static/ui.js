// Small DOM helpers shared by the pages: an element builder that only ever sets text (never HTML),
// the alert region, and formatting.

/** `h("button", {type: "button", onclick}, "text", child)`: attributes, `on*` listeners, children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

const alertBox = () => document.getElementById("alert");

/** Show an error (an ApiError's message is the API's own) in the page's alert region. */
export function showError(err) {
  if (err && err.name === "AbortError") return;
  const box = alertBox();
  box.replaceChildren(h("span", {}, err && err.message ? err.message : String(err)),
    h("button", { type: "button", class: "link", "aria-label": "Dismiss the message", onclick: clearError }, "×"));
  box.classList.add("shown");
}

export function clearError() {
  alertBox().replaceChildren();
  alertBox().classList.remove("shown");
}

/** Run `fn`, showing its failure instead of throwing: every button handler goes through this. */
export async function attempt(fn) {
  try {
    return await fn();
  } catch (err) {
    showError(err);
    return undefined;
  }
}

/** A labelled form field: `<label>text <input ...></label>`. The control also gets the text as its
 *  accessible name: a wrapping label would otherwise add a select's current option to it. */
export function field(label, control) {
  if (!control.hasAttribute("aria-label")) control.setAttribute("aria-label", label);
  return h("label", { class: "field" }, h("span", {}, label), control);
}

export function table(headers, rows, caption) {
  return h("div", { class: "scroll" }, h("table", {},
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, "none")))));
}

export function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i && n < 10 ? 1 : 0)} ${units[i]}`;
}

export function when(value) {
  if (value === null || value === undefined) return "";
  const d = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(d.getTime()) ? String(value) : d.toLocaleString();
}

/** Repeat `fn` every `ms` until it returns true or `stop()` is called; failures are shown and end it. */
export function poll(fn, ms) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    try {
      if (await fn()) return;
    } catch (err) {
      showError(err);
      return;
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

export function heading(text) {
  return h("h1", {}, text);
}
