// cutcap's page script: validation as the user types (the server's parser judges), a search that
// never runs while the query is invalid, brushing the histogram to narrow the time range, copying
// the command line. Everything else is plain links and forms rendered by the server; this script
// writes text only (textContent), never markup.
"use strict";

(() => {
  const form = document.getElementById("search");
  const input = document.getElementById("q");
  const errorBox = document.getElementById("q-error");
  if (form && input && errorBox) wireSearch(form, input, errorBox);
  const hist = document.getElementById("hist");
  if (hist) wireBrush(hist);
  const copy = document.getElementById("copy");
  if (copy) wireCopy(copy);
  document.addEventListener("keydown", (event) => {
    const typing = event.target instanceof HTMLInputElement ||
      event.target instanceof HTMLSelectElement;
    if (event.key === "/" && !typing && input) {
      event.preventDefault();
      input.focus();
      input.select();
    }
  });

  /** Asks the server whether `text` parses: null when it does, else { message, position }. */
  async function validate(text, signal) {
    if (text.trim() === "") return null;
    const response = await fetch(`/api/validate?q=${encodeURIComponent(text)}`, {
      signal,
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    if (!response.ok) throw new Error(`validation answered ${response.status}`);
    const verdict = await response.json();
    return verdict.ok ? null : verdict;
  }

  function showProblem(box, field, text, problem) {
    box.replaceChildren();
    if (problem === null) {
      box.hidden = true;
      field.removeAttribute("aria-invalid");
      return;
    }
    const message = document.createElement("span");
    message.className = "message";
    message.textContent = problem.message;
    box.append(message);
    if (text !== "") {
      const at = Math.min(Math.max(0, problem.position), text.length);
      const where = document.createElement("code");
      where.className = "where";
      const mark = document.createElement("mark");
      mark.textContent = text.slice(at, at + 1) || " ";
      where.append(text.slice(0, at), mark, text.slice(at + 1));
      box.append(where);
    }
    box.hidden = false;
    field.setAttribute("aria-invalid", "true");
  }

  function wireSearch(form, input, box) {
    let pending;
    let timer;
    const check = async () => {
      pending?.abort();
      pending = new AbortController();
      const text = input.value;
      try {
        const problem = await validate(text, pending.signal);
        showProblem(box, input, text, problem);
        return problem;
      } catch (error) {
        if (error.name === "AbortError") return undefined;
        showProblem(box, input, "", { message: `Cannot check the query: ${error.message}` });
        return undefined;
      }
    };
    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(check, 150);
    });
    const range = document.getElementById("range");
    const from = document.getElementById("from");
    const to = document.getElementById("to");
    range?.addEventListener("change", () => {
      if (range.value !== "" && from && to) from.value = to.value = "";
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearTimeout(timer);
      const problem = await check();
      if (problem !== null) {
        input.focus();
        return;
      }
      const params = new URLSearchParams();
      for (const [name, value] of new FormData(form)) {
        if (typeof value === "string" && value.trim() !== "") params.set(name, value.trim());
      }
      const query = params.toString();
      location.assign(query === "" ? "/" : `/?${query}`);
    });
  }

  function wireBrush(svg) {
    const from = Number(svg.dataset.from);
    const step = Number(svg.dataset.step);
    const count = Number(svg.dataset.count);
    const brush = document.getElementById("brush");
    if (!(count > 0) || !brush) return;
    const bucketAt = (event) => {
      const box = svg.getBoundingClientRect();
      const x = Math.min(Math.max(event.clientX - box.left, 0), box.width - 1);
      return Math.floor(x / box.width * count);
    };
    let start = null;
    let moved = false;
    svg.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      start = bucketAt(event);
      moved = false;
      svg.setPointerCapture(event.pointerId);
    });
    svg.addEventListener("pointermove", (event) => {
      if (start === null) return;
      const now = bucketAt(event);
      if (now !== start) moved = true;
      brush.setAttribute("x", String(Math.min(start, now)));
      brush.setAttribute("width", String(Math.abs(now - start) + 1));
    });
    const narrow = (lo, hi) => {
      const params = new URLSearchParams(location.search);
      params.delete("range");
      params.delete("page");
      params.set("from", iso(from + lo * step));
      params.set("to", iso(from + (hi + 1) * step));
      location.assign(`/?${params}`);
    };
    const show = (lo, hi) => {
      brush.setAttribute("x", String(lo));
      brush.setAttribute("width", String(hi - lo + 1));
    };
    svg.addEventListener("pointerup", (event) => {
      if (start === null) return;
      const end = bucketAt(event);
      const [lo, hi] = [Math.min(start, end), Math.max(start, end)];
      start = null;
      if (!moved) return; // a click: the bar's own link narrows to its bucket
      event.preventDefault();
      narrow(lo, hi);
    });
    // Keyboard: arrows move a one-bucket selection, Shift+arrows widen it, Enter narrows to it.
    let anchor = 0;
    let cursor = 0;
    svg.addEventListener("focus", () => show(Math.min(anchor, cursor), Math.max(anchor, cursor)));
    svg.addEventListener("keydown", (event) => {
      const move = event.key === "ArrowLeft" ? -1 : event.key === "ArrowRight" ? 1 : 0;
      if (move !== 0) {
        event.preventDefault();
        cursor = Math.min(Math.max(cursor + move, 0), count - 1);
        if (!event.shiftKey) anchor = cursor;
        show(Math.min(anchor, cursor), Math.max(anchor, cursor));
      } else if (event.key === "Enter") {
        event.preventDefault();
        narrow(Math.min(anchor, cursor), Math.max(anchor, cursor));
      }
    });
    // A drag must not also follow the link under the pointer.
    svg.addEventListener("click", (event) => {
      if (moved) event.preventDefault();
    });
  }

  function iso(seconds) {
    return new Date(seconds * 1000).toISOString().replace(/\.000Z$/, "Z");
  }

  function wireCopy(button) {
    button.addEventListener("click", async () => {
      const text = button.dataset.copy ?? "";
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch {
        const cli = document.getElementById("cli");
        if (cli) getSelection()?.selectAllChildren(cli);
        button.textContent = "Selected";
      }
      setTimeout(() => (button.textContent = "Copy"), 2000);
    });
  }
})();
