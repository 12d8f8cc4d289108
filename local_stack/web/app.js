"use strict";
// The playground talks to the same public API as every other client: POST /tasks, GET /tasks/{id}.
(() => {
  const TERMINAL = new Set(["completed", "failed", "cancelled"]);
  const POLL_MS = 1000;
  const $ = (id) => document.getElementById(id);
  const store = window.localStorage;

  // `sdq local up` opens the page as /#key=...&runtimes=a,b: a fragment never reaches a server or its logs.
  const params = new URLSearchParams(window.location.hash.slice(1));
  if (params.get("key")) store.setItem("sdq.apiKey", params.get("key"));
  if (params.get("runtimes")) store.setItem("sdq.runtimes", params.get("runtimes"));
  if (window.location.hash) history.replaceState(null, "", window.location.pathname + window.location.search);

  const keyInput = $("api-key");
  keyInput.value = store.getItem("sdq.apiKey") || "";
  keyInput.addEventListener("change", () => store.setItem("sdq.apiKey", keyInput.value.trim()));
  $("key-form").addEventListener("submit", (event) => event.preventDefault());

  const runtimes = (store.getItem("sdq.runtimes") || "").split(",").filter(Boolean);
  const runtimeSelect = $("runtime");
  for (const name of runtimes.length ? runtimes : ["sdruntime"]) {
    const option = document.createElement("option");
    option.value = option.textContent = name;
    runtimeSelect.appendChild(option);
  }

  let tasks = loadTasks();
  const shownImages = new Set();

  function loadTasks() {
    try {
      const saved = JSON.parse(store.getItem("sdq.tasks") || "[]");
      return Array.isArray(saved) ? saved : [];
    } catch (_) {
      return [];
    }
  }

  function saveTasks() {
    store.setItem("sdq.tasks", JSON.stringify(tasks.slice(0, 50)));
  }

  class ApiError extends Error {
    constructor(status, error) {
      const fields = (error && error.fields) || [];
      const lines = fields.map((f) => `${f.field}: ${f.message}`);
      const hint = status === 403 ? " (check the API key at the top right)" : "";
      super([`${status} ${(error && error.message) || "request failed"}${hint}`, ...lines].join("\n"));
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const headers = { "x-api-key": keyInput.value.trim() };
    if (body !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new ApiError(response.status, data.error);
    return data;
  }

  function seconds(task) {
    const start = Date.parse(task.created_at || "") || task.submittedAt;
    const end = Date.parse(task.finished_at || "") || (TERMINAL.has(task.status) ? task.updatedAt : Date.now());
    return start && end ? `${Math.max(0, (end - start) / 1000).toFixed(1)} s` : "";
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function renderTasks() {
    const body = $("tasks").querySelector("tbody");
    body.replaceChildren();
    for (const task of tasks) {
      const row = document.createElement("tr");
      row.dataset.taskId = task.id;
      const idCell = cell(row, "");
      const code = document.createElement("code");
      code.textContent = task.id.slice(0, 8);
      code.title = task.id;
      idCell.appendChild(code);
      cell(row, task.prompt, "prompt").title = task.prompt;
      cell(row, task.runtime);
      const status = cell(row, task.status, `status ${task.status}`);
      if (task.error) status.title = `${task.error.code}: ${task.error.message}`;
      cell(row, seconds(task));
      const actions = cell(row, "");
      if (!TERMINAL.has(task.status) && task.status !== "submitting") {
        const cancel = document.createElement("button");
        cancel.type = "button";
        cancel.className = "link cancel";
        cancel.textContent = task.cancelRequested ? "cancelling" : "cancel";
        cancel.disabled = Boolean(task.cancelRequested);
        cancel.addEventListener("click", () => cancelTask(task));
        actions.appendChild(cancel);
      }
      body.appendChild(row);
    }
    $("no-tasks").hidden = tasks.length > 0;
  }

  function renderGallery() {
    const gallery = $("gallery");
    for (const task of [...tasks].reverse()) {
      (task.images || []).forEach((link, index) => {
        const key = `${task.id}/${index}`;
        if (shownImages.has(key) || !link.url) return;
        shownImages.add(key);
        const figure = document.createElement("figure");
        figure.dataset.taskId = task.id;
        const img = document.createElement("img");
        img.src = link.url;
        img.alt = task.prompt;
        img.loading = "lazy";
        const caption = document.createElement("figcaption");
        caption.textContent = task.prompt;
        caption.title = `${task.prompt}\n${link.s3}`;
        figure.append(img, caption);
        gallery.prepend(figure);
      });
    }
    $("no-images").hidden = shownImages.size > 0;
  }

  function render() {
    renderTasks();
    renderGallery();
  }

  async function cancelTask(task) {
    task.cancelRequested = true;
    render();
    try {
      const record = await api("DELETE", `/tasks/${encodeURIComponent(task.id)}`);
      task.status = record.status || task.status;
    } catch (err) {
      task.cancelRequested = false;
      $("form-error").textContent = err.message;
      $("form-error").hidden = false;
    }
    saveTasks();
    render();
  }

  async function poll() {
    const pending = tasks.filter((t) => !TERMINAL.has(t.status) && t.status !== "submitting");
    await Promise.all(
      pending.map(async (task) => {
        try {
          const record = await api("GET", `/tasks/${encodeURIComponent(task.id)}`);
          Object.assign(task, {
            status: record.status,
            created_at: record.created_at,
            finished_at: record.finished_at,
            images: record.images || [],
            error: record.error || null,
            updatedAt: Date.now(),
          });
        } catch (err) {
          if (err instanceof ApiError && err.status === 404) Object.assign(task, { status: "failed", error: { code: "not_found", message: "unknown task" } });
        }
      }),
    );
    if (pending.length) {
      saveTasks();
      render();
    }
    window.setTimeout(poll, POLL_MS);
  }

  // The served models' own example prompts (the toy-world model's vocabulary by default), written by the stack.
  async function showSuggestions() {
    let examples = [];
    try {
      const response = await fetch("examples.json", { cache: "no-cache" });
      if (response.ok) examples = (await response.json()).examples || [];
    } catch (err) {
      examples = [];
    }
    const box = $("suggestions");
    for (const text of examples) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link suggestion";
      button.textContent = text;
      button.addEventListener("click", () => { $("prompt").value = text; });
      box.appendChild(button);
    }
    box.hidden = examples.length === 0;
    if (examples.length && !$("prompt").value) $("prompt").value = examples[0];
  }
  showSuggestions();

  $("submit-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const errorBox = $("form-error");
    errorBox.hidden = true;
    // Left empty, size and steps are not sent: the served model's own defaults apply (the toy model: 32 x 32).
    const content = { prompt: $("prompt").value.trim() };
    if ($("size").value) content.width = content.height = Number($("size").value);
    if ($("steps").value) content.steps = Number($("steps").value);
    const seed = Number($("seed").value);
    if (Number.isInteger(seed) && seed >= 0) content.seed = seed;
    if ($("negative").value.trim()) content.negative_prompt = $("negative").value.trim();
    const runtime = runtimeSelect.value;
    const body = { task: { metadata: { runtime, tasktype: "text-to-image", context: { source: "playground" } }, content } };
    $("submit").disabled = true;
    try {
      const accepted = await api("POST", "/tasks", body);
      tasks.unshift({ id: accepted.id, prompt: content.prompt, runtime, status: accepted.status || "queued", submittedAt: Date.now(), images: [] });
      saveTasks();
      render();
    } catch (err) {
      errorBox.textContent = err.message;
      errorBox.hidden = false;
    } finally {
      $("submit").disabled = false;
    }
  });

  $("clear").addEventListener("click", () => {
    tasks = [];
    shownImages.clear();
    $("gallery").replaceChildren();
    saveTasks();
    render();
  });

  render();
  poll();
})();
