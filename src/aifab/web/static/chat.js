// Chat: a model or a RAG app, the answer streamed and re-rendered as Markdown as it arrives, its
// citations as numbered chips, tool steps, feedback; conversations kept in this browser (localStorage).

import { api, streamChat } from "./api.js";
import { renderMarkdown } from "./markdown.js";
import { attempt, field, h, showError } from "./ui.js";

const STORE = "aifab.conversations";

function load() {
  try {
    return JSON.parse(localStorage.getItem(STORE)) || [];
  } catch {
    return [];
  }
}

function save(conversations) {
  localStorage.setItem(STORE, JSON.stringify(conversations));
}

function newConversation(model) {
  return { id: crypto.randomUUID(), title: "New conversation", model, messages: [], created: Date.now() };
}

export async function render(view) {
  let conversations = load();
  let current = conversations[0] || newConversation("");
  let controller = null;

  const models = await api("/v1/models");
  const chatModels = models.data.filter((m) => m.kind !== "embedding" && m.kind !== "encoder");
  const apps = chatModels.filter((m) => m.kind === "rag-app");
  const plain = chatModels.filter((m) => m.kind !== "rag-app");
  const option = (m) => h("option", { value: m.id }, m.id);
  const picker = h("select", { name: "model" },
    apps.length ? h("optgroup", { label: "Apps (answer from documents)" }, apps.map(option)) : null,
    h("optgroup", { label: "Models" }, plain.map(option)));
  const maxTokens = h("input", { type: "number", name: "max_tokens", min: 1, max: 4096, placeholder: "default" });
  const temperature = h("input", { type: "number", name: "temperature", min: 0, max: 2, step: 0.1, placeholder: "default" });
  const list = h("ul", { class: "conversations" });
  const log = h("div", { class: "log", "aria-live": "polite" });
  const input = h("textarea", { name: "message", rows: 3, required: true, placeholder: "Ask something…" });
  const send = h("button", { type: "submit" }, "Send");
  const stop = h("button", { type: "button", class: "secondary", hidden: true, onclick: () => controller && controller.abort() }, "Stop");
  const dialog = sourceDialog();

  function persist() {
    if (!current.messages.length) return;
    conversations = [current, ...conversations.filter((c) => c.id !== current.id)];
    save(conversations);
    drawList();
  }

  function drawList() {
    list.replaceChildren(...conversations.map((c) => h("li", { class: c.id === current.id ? "active" : "" },
      h("button", { type: "button", class: "link", "aria-current": c.id === current.id ? "true" : null,
        onclick: () => open(c) }, c.title),
      h("button", { type: "button", class: "icon", "aria-label": `Delete conversation: ${c.title}`,
        onclick: () => remove(c) }, "×"))));
  }

  function open(conversation) {
    if (controller) controller.abort();
    current = conversation;
    if (current.model && [...picker.options].some((o) => o.value === current.model)) picker.value = current.model;
    log.replaceChildren(...current.messages.map((m) => message(m)));
    drawList();
  }

  function remove(conversation) {
    conversations = conversations.filter((c) => c.id !== conversation.id);
    save(conversations);
    if (conversation.id === current.id) open(conversations[0] || newConversation(picker.value));
    else drawList();
  }

  function message(m) {
    if (m.role === "user") return h("article", { class: "msg user" }, h("p", {}, m.content));
    const view = answerView(m, dialog);
    view.update();
    return view.el;
  }

  async function ask(text) {
    current.model = picker.value;
    if (!current.messages.length) current.title = text.slice(0, 60);
    const history = current.messages.map(({ role, content }) => ({ role, content }));
    const user = { role: "user", content: text };
    const answer = { role: "assistant", content: "", citations: null, cited: {}, steps: [], id: null };
    current.messages.push(user, answer);
    log.append(message(user));
    const shown = answerView(answer, dialog);
    log.append(shown.el);
    shown.el.scrollIntoView({ block: "end" });
    const body = { model: picker.value, messages: [...history, user] };
    if (maxTokens.value) body.max_tokens = Number(maxTokens.value);
    if (temperature.value) body.temperature = Number(temperature.value);
    controller = new AbortController();
    send.disabled = true;
    stop.hidden = false;
    const started = performance.now();
    let painted = false;
    try {
      await streamChat(body, {
        signal: controller.signal,
        onEvent: (chunk) => {
          answer.id = answer.id || chunk.id;
          if (chunk.aifab === "citations") answer.citations = chunk.citations;
          else if (chunk.aifab === "citation") for (const n of chunk.citation.sources || []) answer.cited[n] = true;
          else if (chunk.aifab === "tool_step") answer.steps.push(chunk.tool_step);
          for (const choice of chunk.choices || []) answer.content += (choice.delta && choice.delta.content) || "";
        },
        onBatch: () => {
          shown.update();
          if (!painted && answer.content.trim()) { // the first text is in the page: what a user waits for
            painted = true;
            performance.mark("first-token", { detail: { id: answer.id } });
            shown.el.dataset.firstTokenMs = (performance.now() - started).toFixed(1);
          }
        },
      });
    } catch (err) {
      if (err.name === "AbortError") answer.stopped = true;
      else { answer.error = err.message; showError(err); }
    } finally {
      controller = null;
      send.disabled = false;
      stop.hidden = true;
      answer.done = true;
      shown.update();
      shown.el.dataset.done = "true";
      persist();
    }
  }

  const composer = h("form", { class: "composer", "aria-label": "Ask" },
    field("Message", input), h("div", { class: "row" }, send, stop));
  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text || controller) return;
    input.value = "";
    attempt(() => ask(text));
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      composer.requestSubmit();
    }
  });

  view.append(h("div", { class: "chat" },
    h("aside", { class: "sidebar", "aria-label": "Conversations" },
      h("button", { type: "button", onclick: () => open(newConversation(picker.value)) }, "New conversation"),
      list),
    h("section", { class: "thread", "aria-label": "Conversation" },
      h("div", { class: "row wrap" }, field("Model or app", picker),
        h("details", { class: "options" }, h("summary", {}, "Options"),
          h("div", { class: "row wrap" }, field("Max tokens", maxTokens), field("Temperature", temperature)))),
      log, composer)), dialog);
  open(current);
  if (!current.model && apps.length) picker.value = apps[0].id;
  return () => controller && controller.abort();
}

/** One answer: Markdown body, tool steps, citation chips, feedback. `update()` redraws it from `m`. */
function answerView(m, dialog) {
  const body = h("div", { class: "markdown" });
  const steps = h("div", { class: "steps" });
  const chips = h("div", { class: "chips", role: "list", "aria-label": "Sources" });
  const actions = h("div", { class: "actions" });
  const el = h("article", { class: "msg assistant" }, body, steps, chips, actions);
  m.steps = m.steps || [];
  body.addEventListener("click", (event) => {
    const cite = event.target.closest("button.cite");
    if (cite) showSource(dialog, m, Number(cite.dataset.cite));
  });
  let drawnSteps = 0;
  function update() {
    body.innerHTML = renderMarkdown(m.content) || (m.done ? "" : '<p class="muted">…</p>');
    if (m.error) body.append(h("p", { class: "error" }, m.error));
    if (m.stopped) body.append(h("p", { class: "muted" }, "(stopped)"));
    for (; drawnSteps < m.steps.length; drawnSteps++) {
      const step = m.steps[drawnSteps];
      steps.append(h("details", { class: "step" },
        h("summary", {}, `${step.phase === "result" ? "Result of" : "Calling"} ${step.name || "a tool"}`),
        h("pre", {}, JSON.stringify(step, null, 2))));
    }
    // while streaming: the sources cited so far; at the end: every source the model was given, cited ones first
    const numbers = m.citations ? [...m.citations].sort((a, b) => Number(b.cited) - Number(a.cited)).map((c) => c.index)
      : Object.keys(m.cited || {}).map(Number);
    chips.replaceChildren(...numbers.map((n) => {
      const c = m.citations && m.citations.find((x) => x.index === n);
      const cited = c ? c.cited : true;
      const name = c && c.source ? c.source.split("/").pop() : "";
      return h("span", { role: "listitem" }, h("button", { type: "button", class: cited ? "chip cited" : "chip",
        title: cited ? "cited by the answer" : "given to the model, not cited", onclick: () => showSource(dialog, m, n) },
      `[${n}]${name ? ` ${name}` : ""}`));
    }));
    if (m.done && m.id && !actions.childElementCount) actions.append(feedback(m));
    if (m.id) el.dataset.responseId = m.id;
  }
  return { el, update };
}

function feedback(m) {
  const status = h("span", { class: "muted", role: "status" });
  const correction = h("textarea", { name: "correction", rows: 3, required: true });
  const form = h("form", { class: "correction", hidden: true }, field("The right answer", correction),
    h("button", { type: "submit" }, "Send correction"));
  async function rate(rating, fix) {
    const body = { response_id: m.id, rating };
    if (fix) body.correction = fix;
    const done = await attempt(() => api("/v1/feedback", { body }));
    if (done) {
      m.rating = rating;
      status.textContent = fix ? "Correction recorded, thank you." : `Rated ${rating === "up" ? "good" : "bad"}, thank you.`;
      form.hidden = true;
    }
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    rate("down", correction.value.trim());
  });
  return h("div", { class: "feedback" },
    h("button", { type: "button", class: "secondary", onclick: () => rate("up") }, "Good answer"),
    h("button", { type: "button", class: "secondary", onclick: () => rate("down") }, "Bad answer"),
    h("button", { type: "button", class: "link", onclick: () => { form.hidden = !form.hidden; if (!form.hidden) correction.focus(); } },
      "Correct this answer"),
    status, form);
}

function sourceDialog() {
  const content = h("div", { class: "source" });
  const dialog = h("dialog", { "aria-labelledby": "source-title" },
    h("div", { class: "row between" }, h("h2", { id: "source-title" }, "Source"),
      h("button", { type: "button", class: "icon", "aria-label": "Close", onclick: () => dialog.close() }, "×")),
    content);
  dialog.content = content;
  return dialog;
}

function showSource(dialog, m, n) {
  const c = m.citations && m.citations.find((x) => x.index === n);
  dialog.querySelector("h2").textContent = `Source [${n}]`;
  if (!c) {
    dialog.content.replaceChildren(h("p", { class: "muted" }, "The source passage arrives with the end of the answer."));
  } else {
    const where = [c.section && c.section.length ? c.section.join(" › ") : null, c.page ? `page ${c.page}` : null,
      c.start !== undefined && c.start !== null ? `characters ${c.start}–${c.end}` : null].filter(Boolean);
    dialog.content.replaceChildren(
      h("p", {}, h("strong", {}, c.source || c.title || "document")),
      where.length ? h("p", { class: "muted" }, where.join(" · ")) : null,
      h("blockquote", {}, c.text || ""));
  }
  if (!dialog.open) dialog.showModal();
}
