// The upload page, enhanced: choose, drop or paste a photo, preview it, classify it without
// leaving the page, then "why?" and "Wrong? It is a ...". Without this script the page's plain
// forms do the same work through post/redirect/get. No framework, no inline code: the page runs
// under a Content-Security-Policy without 'unsafe-inline'.
(() => {
  "use strict";

  const form = document.getElementById("upload-form");
  if (!form || !window.fetch || !window.FormData) {
    return; // the plain form keeps working
  }
  const fileInput = document.getElementById("file");
  const cameraInput = document.getElementById("camera");
  const dropzone = document.getElementById("dropzone");
  const preview = document.getElementById("preview");
  const previewImage = document.getElementById("preview-image");
  const previewName = document.getElementById("preview-name");
  const errorBox = document.getElementById("upload-error");
  const status = document.getElementById("upload-status");
  const submitButton = document.getElementById("submit");
  const resultSection = document.getElementById("result");
  const template = document.getElementById("result-template");
  const apiUrl = form.dataset.api;
  const maxBytes = Number(form.dataset.maxBytes) || 0;

  let chosen = null; // the photo the next "Classify" sends
  let previewUrl = null;
  let resultFile = null; // the photo behind the result on screen, sent again by its buttons

  const percent = (probability) => `${(probability * 100).toFixed(1)}%`;
  const megabytes = (bytes) => `${(bytes / 1048576).toFixed(1)} MB`;

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  function setBusy(button, busy) {
    button.disabled = busy;
    const spinner = button.querySelector(".spinner-border");
    if (spinner) {
      spinner.hidden = !busy;
    }
  }

  // The server's sentence: every error this page's requests can get is JSON {"error": ...}
  // (the API's, and the others' because the script asks for JSON: see webapp/errors.py).
  async function errorSentence(response) {
    try {
      const body = await response.json();
      if (body && body.error) {
        return body.error;
      }
    } catch (ignored) {
      // not JSON (a proxy's own error page, say): fall through to the generic sentence
    }
    return `The server answered ${response.status}: try again, or reload the page.`;
  }

  async function post(url, body) {
    let response;
    try {
      response = await fetch(url, {
        method: "POST", body, headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
    } catch (error) {
      throw new Error("The server could not be reached: check the connection and try again.");
    }
    if (!response.ok) {
      throw new Error(await errorSentence(response));
    }
    return response.json();
  }

  // --- choosing a photo ----------------------------------------------------------------------

  function choose(file, how) {
    showError("");
    if (!file) {
      return;
    }
    if (file.type && !file.type.startsWith("image/")) {
      showError(`That file is not a picture (${file.type}): choose a JPEG, PNG, WebP, GIF, ` +
                "BMP or TIFF photo.");
      return;
    }
    if (maxBytes && file.size > maxBytes) {
      showError(`That photo is ${megabytes(file.size)}, more than the limit of ` +
                `${megabytes(maxBytes)}: choose a smaller one.`);
      return;
    }
    chosen = file;
    if (how !== "input") {
      // show the dropped or pasted photo in the file field too, as if it had been chosen there
      try {
        const transfer = new DataTransfer();
        transfer.items.add(file);
        fileInput.files = transfer.files;
      } catch (ignored) {
        // older browsers: the preview below still shows what will be sent
      }
    }
    if (previewUrl) {
      URL.revokeObjectURL(previewUrl);
    }
    previewUrl = URL.createObjectURL(file);
    previewImage.src = previewUrl;
    const name = file.name || "pasted picture";
    previewImage.alt = `Preview of ${name}`;
    previewName.textContent = `${name}, ${megabytes(file.size)}: press Classify to send it.`;
    preview.hidden = false;
    status.textContent = `Photo ready: ${name}. Press Classify to send it.`;
  }

  fileInput.addEventListener("change", () => choose(fileInput.files[0], "input"));
  if (cameraInput) {
    cameraInput.addEventListener("change", () => choose(cameraInput.files[0], "camera"));
  }

  const carriesFiles = (event) => Boolean(event.dataTransfer) &&
    Array.from(event.dataTransfer.types || []).includes("Files");

  // a photo dropped anywhere on the page is taken, not opened by the browser in its place
  ["dragenter", "dragover"].forEach((type) => {
    document.addEventListener(type, (event) => {
      if (carriesFiles(event)) {
        event.preventDefault();
        event.dataTransfer.dropEffect = "copy";
        dropzone.classList.add("dragover");
      }
    });
  });
  document.addEventListener("dragleave", (event) => {
    if (!event.relatedTarget) {
      dropzone.classList.remove("dragover");
    }
  });
  document.addEventListener("drop", (event) => {
    dropzone.classList.remove("dragover");
    if (carriesFiles(event)) {
      event.preventDefault();
      choose(event.dataTransfer.files[0], "drop");
    }
  });

  document.addEventListener("paste", (event) => {
    const files = Array.from((event.clipboardData && event.clipboardData.files) || []);
    const picture = files.find((file) => file.type.startsWith("image/"));
    if (picture) {
      event.preventDefault();
      choose(picture, "paste");
    }
  });

  // --- classifying -----------------------------------------------------------------------------

  function fillResult(answer) {
    const card = template.content.firstElementChild.cloneNode(true);
    const photo = card.querySelector(".result-photo");
    photo.src = answer.thumbnail;
    card.querySelector(".result-label").textContent = answer.label;
    const sentence = `That picture belongs to ${answer.label} ` +
      `(${percent(answer.confidence)} confident)`;
    card.querySelector(".result-sentence").textContent = sentence;
    card.querySelectorAll(".result-why-label").forEach((element) => {
      element.textContent = answer.label;
    });
    const heatmap = card.querySelector(".result-heatmap");
    if (heatmap) {
      heatmap.alt = "Your photo with a heat map over it: the brighter the area, the more it " +
        `counted toward ${answer.label}`;
    }

    // most probable first; the template has a row for each of the top classes
    const ranked = Object.entries(answer.probabilities).sort((a, b) => b[1] - a[1]);
    card.querySelectorAll(".bar").forEach((row, index) => {
      const [label, probability] = ranked[index];
      row.querySelector(".bar-name").textContent = label;
      const meter = row.querySelector(".bar-meter");
      meter.value = probability;
      meter.textContent = percent(probability);
      row.querySelector(".bar-percent").textContent = percent(probability);
    });
    const more = card.querySelector(".bars-more");
    more.hidden = ranked.length <= card.querySelectorAll(".bar").length;

    // "Wrong? It is a ...": every class but the predicted one
    card.querySelectorAll(".feedback-button").forEach((button) => {
      button.hidden = button.value === answer.label;
    });
    card.querySelectorAll(".feedback-choice option").forEach((option) => {
      option.disabled = option.value === answer.label;
    });
    const select = card.querySelector(".feedback-choice select");
    if (select) {
      const first = Array.from(select.options).find((option) => !option.disabled);
      select.value = first ? first.value : "";
    }

    resultSection.replaceChildren(card);
    resultSection.hidden = false;
    return sentence;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!chosen) {
      showError("Choose a photo to upload.");
      fileInput.focus();
      return;
    }
    showError("");
    const file = chosen;
    const body = new FormData();
    body.append("file", file, file.name || "photo");
    setBusy(submitButton, true);
    form.setAttribute("aria-busy", "true");
    status.textContent = "Classifying…";
    try {
      const answer = await post(`${apiUrl}?thumbnail=1`, body);
      resultFile = file;
      preview.hidden = true; // the result shows the photo now
      status.textContent = fillResult(answer);
      const reduced = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
      resultSection.scrollIntoView({ behavior: reduced ? "auto" : "smooth", block: "nearest" });
    } catch (error) {
      status.textContent = "";
      showError(error.message);
    } finally {
      setBusy(submitButton, false);
      form.removeAttribute("aria-busy");
    }
  });

  // --- the result's buttons ------------------------------------------------------------------
  // Only the result made here has its photo in hand; a result the server rendered after a plain
  // form post is left to its own forms.

  async function explain(whyForm) {
    const button = whyForm.querySelector(".why-button");
    const whyStatus = whyForm.querySelector(".why-status");
    const body = new FormData();
    body.append("file", resultFile, resultFile.name || "photo");
    setBusy(button, true);
    whyStatus.textContent = "Working out where the model looked…";
    try {
      const answer = await post(`${apiUrl}?explain=1`, body);
      const figure = resultSection.querySelector(".result-why");
      figure.querySelector(".result-heatmap").src = answer.heatmap;
      figure.hidden = false;
      figure.scrollIntoView({ block: "nearest" });
      whyStatus.textContent = "The heat map is shown with your photo.";
      button.disabled = true;
      button.querySelector(".spinner-border").hidden = true;
    } catch (error) {
      whyStatus.textContent = error.message;
      setBusy(button, false);
    }
  }

  async function sendFeedback(feedbackForm, submitter) {
    const feedbackStatus = feedbackForm.querySelector(".feedback-status");
    const label = submitter && submitter.name === "label" ?
      submitter.value : feedbackForm.elements.label.value;
    const body = new FormData();
    body.append("csrf_token", feedbackForm.elements.csrf_token.value);
    body.append("label", label);
    body.append("file", resultFile, resultFile.name || "photo");
    const controls = feedbackForm.querySelectorAll("button, select");
    controls.forEach((control) => { control.disabled = true; });
    feedbackStatus.textContent = "Sending…";
    try {
      const answer = await post(feedbackForm.action, body);
      feedbackStatus.textContent = answer.message;
    } catch (error) {
      feedbackStatus.textContent = error.message;
      controls.forEach((control) => { control.disabled = false; });
    }
  }

  resultSection.addEventListener("submit", (event) => {
    if (!resultFile) {
      return;
    }
    const target = event.target;
    if (target.classList.contains("why-form")) {
      event.preventDefault();
      explain(target);
    } else if (target.classList.contains("feedback-form")) {
      event.preventDefault();
      sendFeedback(target, event.submitter);
    }
  });
})();
