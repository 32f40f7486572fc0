// The labeling page (templates/index.html): one image at a time, labeled with the class buttons or
// the keys 1-9 (0: the tenth class); s skips, u undoes, r reopens a past image to relabel it, Esc goes back to new images.
// It talks only to this server's JSON API (robustal/label/server.py); no library, no build step.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const classButtons = [...document.querySelectorAll("button.class")];
  const POLL_NEXT_MS = 3000; // while nothing is to be asked (a round is training)
  const POLL_PROGRESS_MS = 5000; // counts, the training indicator and the plot
  const SVG = "http://www.w3.org/2000/svg";

  const state = {
    item: null, // the image shown
    mode: "new", // "new": asked now; "reopened": a past image to relabel; "undone": just undone
    pending: null, // the new image left to relabel or undo, shown again afterwards
    history: [], // this annotator's latest images, most recent first
    cursor: -1, // which history entry `r` reopened
    busy: false, // a request is in flight: keys wait instead of labeling the wrong image
    roundsShown: -1,
    pollTimer: null,
  };

  async function api(method, url, body) {
    const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (method === "POST") {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body || {});
    }
    const response = await fetch(url, options);
    let data = null;
    try {
      data = await response.json();
    } catch (ignored) {
      data = null;
    }
    if (!response.ok) throw new Error((data && data.error) || `${response.status} ${response.statusText}`);
    return data;
  }

  // One user action at a time; its failure is shown, not thrown.
  async function act(work) {
    if (state.busy) return;
    state.busy = true;
    $("main").setAttribute("aria-busy", "true"); // also tells a test when the page is ready for a key
    try {
      await work();
    } catch (failure) {
      say(failure.message, true);
    } finally {
      state.busy = false;
      $("main").setAttribute("aria-busy", "false");
    }
  }

  function say(text, isError = false) {
    const message = $("message");
    message.textContent = text;
    message.classList.toggle("error", isError);
  }

  function describe(item) {
    const asked = {
      validation: "validation image (random)",
      initial: "initial batch (random)",
      round: `round ${item.round}, rank ${item.rank + 1}` + (item.score === null ? "" : `, score ${item.score.toPrecision(3)}`),
    }[item.role] || item.role;
    const current = item.label_name !== null ? ` · labeled ${item.label_name}` : item.skipped ? " · skipped" : "";
    return `Image ${item.id} · ${asked}${current}`;
  }

  function show(item, mode) {
    clearTimeout(state.pollTimer);
    state.item = item;
    state.mode = mode;
    const image = $("image");
    image.classList.remove("pixelated");
    image.src = item.image;
    image.alt = `Image ${item.id} to label`;
    image.hidden = false;
    $("waiting").hidden = true;
    $("caption").textContent = describe(item);
    const banner = $("banner");
    banner.hidden = mode === "new";
    if (mode === "reopened") {
      banner.textContent = `Relabeling image ${item.id}: choose its class, or Esc to go back to new images.`;
    } else if (mode === "undone") {
      banner.textContent = `Undone: image ${item.id} has no label again. Choose its class, or Esc to go back.`;
    }
    for (const button of classButtons) {
      button.disabled = false;
      button.setAttribute("aria-pressed", String(Number(button.dataset.label) === item.label));
    }
    $("skip").disabled = mode === "reopened";
    $("back").hidden = mode === "new";
    $("main").focus({ preventScroll: true }); // keys work at once; Enter does not press a button again
  }

  function showWaiting(progress) {
    state.item = null;
    state.mode = "new";
    $("image").hidden = true;
    $("image").removeAttribute("src");
    $("caption").textContent = "";
    $("banner").hidden = true;
    $("back").hidden = true;
    for (const button of [...classButtons, $("skip")]) button.disabled = true;
    const waiting = $("waiting");
    waiting.hidden = false;
    waiting.textContent = progress.training
      ? `${trainingText(progress)}: the next images come when it finishes. This page checks every few seconds.`
      : progress.finished
        ? "Done: every image of the budget is labeled. Export the labels with robustal label export."
        : progress.training_error
          ? `The last training round failed (${progress.training_error}); see trainer.log in the project folder.`
          : "Nothing to label right now (other annotators hold the open images). This page checks every few seconds.";
    clearTimeout(state.pollTimer);
    state.pollTimer = setTimeout(pollNext, POLL_NEXT_MS);
  }

  // Asks again while waiting; keeps asking through a busy moment or a failed request.
  function pollNext() {
    const again = () => (state.pollTimer = setTimeout(pollNext, POLL_NEXT_MS));
    if (state.busy) {
      again();
      return;
    }
    act(async () => {
      try {
        await nextItem();
      } catch (failure) {
        say(failure.message, true);
        again();
      }
    });
  }

  async function nextItem() {
    const data = await api("GET", "/api/next");
    updateProgress(data.progress);
    state.pending = null;
    if (data.item) show(data.item, "new");
    else showWaiting(data.progress);
  }

  // Back to new images: the one left for a relabel or an undo if it is still unanswered.
  async function resume() {
    const pending = state.pending;
    state.pending = null;
    if (pending) {
      const data = await api("GET", `/api/items/${pending.id}`);
      if (data.item.label === null && !data.item.skipped) {
        show(data.item, "new");
        return;
      }
    }
    await nextItem();
  }

  function leave() {
    if (state.mode === "new" && state.item) state.pending = state.item;
  }

  function label(index) {
    if (!state.item || index >= classButtons.length) return;
    return act(async () => {
      const data = await api("POST", `/api/items/${state.item.id}/label`, { label: index });
      const relabeled = state.mode === "reopened";
      say(`Image ${data.item.id}: ${relabeled ? "relabeled " : ""}${data.item.label_name}` + (data.training_started ? " · a training round started" : ""));
      updateProgress(data.progress);
      await refreshHistory();
      await resume();
    });
  }

  function skip() {
    if (!state.item || state.mode === "reopened") return;
    return act(async () => {
      const data = await api("POST", `/api/items/${state.item.id}/skip`);
      say(`Image ${data.item.id} skipped`);
      updateProgress(data.progress);
      await refreshHistory();
      await resume();
    });
  }

  function undo() {
    return act(async () => {
      const data = await api("POST", "/api/undo");
      updateProgress(data.progress);
      if (!data.item) {
        say("Nothing to undo.");
        return;
      }
      leave();
      show(data.item, "undone");
      say(`Undone: image ${data.item.id}`);
      await refreshHistory();
    });
  }

  // r: the latest image of the history, again r: the one before, and so on.
  function reopenPrevious() {
    return act(async () => {
      await refreshHistory();
      let cursor = state.mode === "reopened" ? state.cursor + 1 : 0;
      while (cursor < state.history.length && state.item && state.history[cursor].id === state.item.id) cursor += 1;
      if (cursor >= state.history.length) {
        say(state.history.length ? "No earlier image in your history." : "You have labeled nothing yet.");
        return;
      }
      state.cursor = cursor;
      leave();
      show(state.history[cursor], "reopened");
    });
  }

  function reopen(itemId) {
    return act(async () => {
      const data = await api("GET", `/api/items/${itemId}`);
      state.cursor = state.history.findIndex((item) => item.id === itemId);
      leave();
      show(data.item, "reopened");
    });
  }

  function back() {
    if (state.mode === "new") return;
    return act(resume);
  }

  async function refreshHistory() {
    const data = await api("GET", "/api/history?limit=20");
    const seen = new Set();
    state.history = data.items.filter((item) => !seen.has(item.id) && seen.add(item.id));
    const list = $("history");
    list.replaceChildren(
      ...state.history.slice(0, 10).map((item) => {
        const entry = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.className = "past";
        const thumbnail = document.createElement("img");
        thumbnail.src = item.image;
        thumbnail.alt = "";
        const text = document.createElement("span");
        text.textContent = `${item.id}: ${item.label_name !== null ? item.label_name : item.skipped ? "skipped" : "no label"}`;
        button.append(thumbnail, text);
        button.setAttribute("aria-label", `Relabel image ${text.textContent}`);
        button.addEventListener("click", () => reopen(item.id));
        entry.append(button);
        return entry;
      }),
    );
  }

  function trainingText(progress) {
    return `Training round ${progress.round} in the background`; // on the labels up to that round's batch
  }

  function updateProgress(p) {
    $("progress").textContent =
      `${p.labeled} labeled of ${p.asked} asked · validation ${p.validation_labeled} of ${p.validation_total}` +
      ` · round ${p.round}: ${p.round_labeled} of ${p.round_size}`;
    $("training").hidden = !p.training;
    $("training-text").textContent = p.training ? trainingText(p) : "";
  }

  async function loadProgress() {
    const data = await api("GET", "/api/progress");
    updateProgress(data.progress);
    if (data.rounds.length !== state.roundsShown) {
      drawPlot(data.rounds);
      state.roundsShown = data.rounds.length;
    }
  }

  function svg(name, attributes, text) {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
    if (text !== undefined) element.textContent = text;
    return element;
  }

  const percent = (value) => `${(100 * value).toFixed(1)}%`;

  // Clean and robust accuracy against the number of labels, one point per finished round.
  function drawPlot(rounds) {
    const plot = $("plot");
    const [width, height, left, right, top, bottom] = [320, 180, 40, 12, 10, 34];
    plot.replaceChildren();
    const y = (value) => top + (1 - value) * (height - top - bottom);
    for (const tick of [0, 0.25, 0.5, 0.75, 1]) {
      plot.append(svg("line", { x1: left, x2: width - right, y1: y(tick), y2: y(tick), class: "grid" }));
      plot.append(svg("text", { x: left - 6, y: y(tick) + 4, class: "tick", "text-anchor": "end" }, `${100 * tick}%`));
    }
    $("latest").textContent = "";
    if (!rounds.length) {
      plot.append(svg("text", { x: (left + width - right) / 2, y: height / 2, class: "empty", "text-anchor": "middle" }, "No finished round yet"));
      plot.setAttribute("aria-label", "No finished round yet");
      return;
    }
    const counts = rounds.map((round) => round.labeled);
    const [low, high] = [Math.min(...counts), Math.max(...counts)];
    const x = (count) => (high === low ? (left + width - right) / 2 : left + ((count - low) / (high - low)) * (width - left - right));
    const ticks = new Set(counts.length <= 6 ? counts : [low, high]); // every round's count while they fit
    for (const count of ticks) {
      plot.append(svg("text", { x: x(count), y: height - bottom + 16, class: "tick", "text-anchor": "middle" }, count));
    }
    plot.append(svg("text", { x: (left + width - right) / 2, y: height - 4, class: "axis", "text-anchor": "middle" }, "labeled training images"));
    for (const series of ["clean", "robust"]) {
      const key = `${series}_accuracy`;
      const points = rounds.map((round) => `${x(round.labeled)},${y(round[key])}`).join(" ");
      plot.append(svg("polyline", { points, class: `line ${series}` }));
      for (const round of rounds) {
        const dot = svg("circle", { cx: x(round.labeled), cy: y(round[key]), r: 3.5, class: `dot ${series}` });
        dot.append(svg("title", {}, `round ${round.round}, ${round.labeled} labels: ${series} ${percent(round[key])}`));
        plot.append(dot);
      }
    }
    const last = rounds[rounds.length - 1];
    const latest = `round ${last.round}, ${last.labeled} labels: clean ${percent(last.clean_accuracy)}, robust ${percent(last.robust_accuracy)}`;
    plot.setAttribute("aria-label", `${rounds.length} finished rounds; the latest, ${latest}`);
    $("latest").textContent = `Latest model (${latest}).`;
  }

  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat || event.isComposing) return;
    if (event.target instanceof Element && event.target.closest("input, textarea, select")) return;
    const key = event.key.toLowerCase();
    const button = classButtons.find((candidate) => candidate.getAttribute("aria-keyshortcuts") === key);
    if (button) label(Number(button.dataset.label)); // the key shown on the class's button
    else if (key === "s") skip();
    else if (key === "u") undo();
    else if (key === "r") reopenPrevious();
    else if (key === "escape") back();
    else return;
    event.preventDefault();
  }

  document.addEventListener("keydown", onKey);
  for (const button of classButtons) button.addEventListener("click", () => label(Number(button.dataset.label)));
  $("skip").addEventListener("click", skip);
  $("undo").addEventListener("click", undo);
  $("reopen").addEventListener("click", reopenPrevious);
  $("back").addEventListener("click", back);
  // tiny images (8x8 digits, 28x28 MNIST) are upscaled with visible pixels, not blurred
  $("image").addEventListener("load", (event) => {
    event.target.classList.toggle("pixelated", event.target.naturalWidth < 200);
  });

  $("main").focus({ preventScroll: true });
  act(async () => {
    await loadProgress();
    await refreshHistory();
    await nextItem();
  });
  setInterval(() => loadProgress().catch((failure) => say(failure.message, true)), POLL_PROGRESS_MS);
})();
