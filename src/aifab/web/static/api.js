// The aifab HTTP API as the page calls it: the key (kept for this tab only), JSON calls whose failures
// carry the API's own error message, and a chat stream read as server-sent events.

const KEY = "aifab.key";

export const key = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

function headers(extra) {
  const h = { ...extra };
  const k = key.get();
  if (k) h.Authorization = `Bearer ${k}`;
  return h;
}

async function failure(res) {
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body && body.error && body.error.message) message = body.error.message;
  } catch {
    // not JSON (a proxy's page): the status line says what happened
  }
  return new ApiError(message, res.status);
}

/** Call the API: `body` is sent as JSON, `form` (FormData) as multipart; the parsed JSON answer. */
export async function api(path, { method, body, form, signal } = {}) {
  const init = { method: method || (body || form ? "POST" : "GET"), signal };
  if (form) {
    init.body = form;
    init.headers = headers();
  } else {
    init.headers = headers(body === undefined ? {} : { "Content-Type": "application/json" });
    if (body !== undefined) init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(`the server did not answer (${err.message})`, 0);
  }
  if (!res.ok) throw await failure(res);
  return res.status === 204 ? null : res.json();
}

/** POST a streamed chat completion; `onEvent(obj)` gets each parsed `data:` event until `[DONE]`.
 *  `onBatch()` runs after each network read, once its events are handled (one repaint per read). */
export async function streamChat(body, { onEvent, onBatch, signal }) {
  const res = await fetch("/v1/chat/completions", {
    method: "POST", signal,
    headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: JSON.stringify({ ...body, stream: true }),
  });
  if (!res.ok) throw await failure(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    const events = buffer.split(/\r?\n\r?\n/);
    buffer = events.pop();
    for (const event of events) {
      const data = event.split(/\r?\n/).filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      const obj = JSON.parse(data);
      if (obj.error) throw new ApiError(obj.error.message || "the stream failed", res.status);
      onEvent(obj);
    }
    if (onBatch) onBatch();
  }
}
