// The upload page, enhanced: choose, drop or paste photos (one or several), preview them,
// classify them without leaving the page, or click an example; then "why?" and "Wrong? It is
// a ..." on each result. Without this script the page's plain forms do the same work through
// post/redirect/get. No framework, no inline code: the page runs under a
// Content-Security-Policy without 'unsafe-inline'.
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
  const previewImages = document.getElementById("preview-images");
  const previewImage = document.getElementById("preview-image");
  const previewName = document.getElementById("preview-name");
  const errorBox = document.getElementById("upload-error");
  const status = document.getElementById("upload-status");
  const submitButton = document.getElementById("submit");
  const resultSection = document.getElementById("result");
  const template = document.getElementById("result-template");
  const errorTemplate = document.getElementById("result-error-template");
  const examplesForm = document.querySelector(".examples-form");
  const apiUrl = form.dataset.api;
  const severalUrl = form.dataset.apiSeveral;
  const maxBytes = Number(form.dataset.maxBytes) || 0;
  const maxFiles = Number(form.dataset.maxFiles) || 1;
  const minConfidence = Number(form.dataset.minConfidence) || 0;
  const ACCEPTED = "choose a JPEG, PNG, WebP, GIF, BMP or TIFF photo.";

  let chosen = []; // the photos the next "Classify" sends
  let rejection = ""; // why the last choice was refused: said again if Classify is pressed
  let previewUrls = [];
  let cardCount = 0;
  const cardFiles = new WeakMap(); // a result card made here -> the photo behind it

  const percent = (probability) => `${(probability * 100).toFixed(1)}%`;
  // as the server writes sizes (webapp/errors.py): 20 MB, 500 kB, 900 bytes
  function size(bytes) {
    if (bytes >= 1048576) {
      return `${Number((bytes / 1048576).toFixed(1))} MB`;
    }
    if (bytes >= 1024) {
      return `${Math.round(bytes / 1024)} kB`;
    }
    return `${bytes} bytes`;
  }
  const nameOf = (file) => file.name || "pasted picture";

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  // the live region says what happened; once a result shows, it says the result's sentence
  // to screen readers only, since the card shows it on screen
  function say(text, { visible = true } = {}) {
    status.textContent = text;
    status.classList.toggle("visually-hidden", !visible);
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

  function clearResults() {
    resultSection.replaceChildren();
    resultSection.hidden = true;
  }

  function clearPreview() {
    previewUrls.forEach((url) => URL.revokeObjectURL(url));
    previewUrls = [];
    previewImages.querySelectorAll(".preview-extra").forEach((image) => image.remove());
    previewImage.removeAttribute("src");
    previewImage.hidden = false;
    preview.hidden = true;
  }

  // --- choosing photos ----------------------------------------------------------------------

  // why these files cannot be sent, or "" when they can
  function refusal(files) {
    if (files.length > maxFiles) {
      return `You chose ${files.length} photos, and at most ${maxFiles} can be classified at ` +
        "once: choose fewer.";
    }
    const notPicture = files.find((file) => file.type && !file.type.startsWith("image/"));
    if (notPicture) {
      const which = files.length === 1 ? "That file" : nameOf(notPicture);
      return `${which} is not a picture (${notPicture.type}): ${ACCEPTED}`;
    }
    const total = files.reduce((sum, file) => sum + file.size, 0);
    if (maxBytes && total > maxBytes) {
      return files.length === 1 ?
        `That photo is ${size(total)}, more than the limit of ${size(maxBytes)}: choose a ` +
          "smaller one." :
        `These ${files.length} photos are ${size(total)} in all, more than the limit of ` +
          `${size(maxBytes)}: choose fewer or smaller ones.`;
    }
    return "";
  }

  function choose(fileList, how) {
    const files = Array.from(fileList || []);
    showError("");
    if (!files.length) {
      return;
    }
    // whatever was on screen belongs to earlier photos, not to these
    clearResults();
    clearPreview();
    rejection = refusal(files);
    if (rejection) {
      chosen = [];
      say("");
      showError(rejection);
      return;
    }
    chosen = files;
    if (how !== "input") {
      // show the dropped or pasted photos in the file field too, as if chosen there
      try {
        const transfer = new DataTransfer();
        files.forEach((file) => transfer.items.add(file));
        fileInput.files = transfer.files;
      } catch (ignored) {
        // older browsers: the preview below still shows what will be sent
      }
    }
    showPreview(files);
  }

  function showPreview(files) {
    const several = files.length > 1;
    previewImages.classList.toggle("several", several);
    files.forEach((file, index) => {
      const url = URL.createObjectURL(file);
      previewUrls.push(url);
      let image = previewImage;
      if (index > 0) {
        image = previewImage.cloneNode(false);
        image.removeAttribute("id");
        image.classList.add("preview-extra");
        previewImages.append(image);
      }
      image.alt = `Preview of ${nameOf(file)}`;
      image.src = url;
    });
    const total = files.reduce((sum, file) => sum + file.size, 0);
    previewName.textContent = several ?
      `${files.length} photos, ${size(total)} in all: press Classify to send them.` :
      `${nameOf(files[0])}, ${size(total)}: press Classify to send it.`;
    preview.hidden = false;
    say(several ? `${files.length} photos ready. Press Classify to send them.` :
      `Photo ready: ${nameOf(files[0])}. Press Classify to send it.`);
  }

  // a file the browser cannot show (a text file renamed .jpg, or a TIFF) gets no broken image
  previewImages.addEventListener("error", (event) => {
    const image = event.target;
    if (!(image instanceof HTMLImageElement) || !image.getAttribute("src")) {
      return;
    }
    image.hidden = true;
    if (chosen.length === 1) {
      previewName.textContent = `${nameOf(chosen[0])}, ${size(chosen[0].size)}: no preview (the ` +
        "browser cannot show this file); press Classify and the server will check it.";
    }
  }, true);

  fileInput.addEventListener("change", () => choose(fileInput.files, "input"));
  if (cameraInput) {
    cameraInput.addEventListener("change", () => choose(cameraInput.files, "camera"));
  }

  const carriesFiles = (event) => Boolean(event.dataTransfer) &&
    Array.from(event.dataTransfer.types || []).includes("Files");

  // photos dropped anywhere on the page are taken, not opened by the browser in its place
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
      choose(event.dataTransfer.files, "drop");
    }
  });

  document.addEventListener("paste", (event) => {
    const files = Array.from((event.clipboardData && event.clipboardData.files) || []);
    const pictures = files.filter((file) => file.type.startsWith("image/"));
    if (pictures.length) {
      event.preventDefault();
      choose(pictures, "paste");
    }
  });

  // --- the result cards -----------------------------------------------------------------------

  // a clone of `source` whose ids (and the references to them) are its own
  function cloneCard(source) {
    const card = source.content.firstElementChild.cloneNode(true);
    const key = `js${cardCount += 1}`;
    card.querySelectorAll("*").forEach((element) => {
      ["id", "for", "aria-labelledby", "aria-describedby"].forEach((name) => {
        const value = element.getAttribute(name);
        if (value) {
          element.setAttribute(name, value.replaceAll("-template", `-${key}`));
        }
      });
    });
    const labelled = card.getAttribute("aria-labelledby");
    if (labelled) {
      card.setAttribute("aria-labelledby", labelled.replaceAll("-template", `-${key}`));
    }
    return card;
  }

  function resultSentence(answer) {
    return answer.sure === false ?
      `The model is not sure what this is: no class reaches the ${Math.round(minConfidence * 100)}% ` +
        "it needs to name one." :
      `That picture belongs to ${answer.label} (${percent(answer.confidence)} confident)`;
  }

  function fillResult(answer, caption) {
    const card = cloneCard(template);
    const sure = answer.sure !== false;
    card.querySelector(".result-photo").src = answer.thumbnail;
    card.querySelectorAll(".result-caption, .result-caption-text").forEach((element) => {
      element.textContent = caption;
    });
    const label = card.querySelector(".result-label");
    label.textContent = sure ? answer.label : "Not sure";
    label.classList.toggle("result-unsure", !sure);
    const sentence = resultSentence(answer);
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
      const [name, probability] = ranked[index];
      row.querySelector(".bar-name").textContent = name;
      const meter = row.querySelector(".bar-meter");
      meter.value = probability;
      meter.textContent = percent(probability);
      row.querySelector(".bar-percent").textContent = percent(probability);
    });
    const more = card.querySelector(".bars-more");
    more.hidden = ranked.length <= card.querySelectorAll(".bar").length;

    // "Wrong? It is a ...": every class but the one named; "not sure": every class
    const legend = card.querySelector(".feedback-form legend");
    if (legend && !sure) {
      legend.textContent = "What is it? It is a …";
    }
    card.querySelectorAll(".feedback-button").forEach((button) => {
      button.hidden = sure && button.value === answer.label;
    });
    card.querySelectorAll(".feedback-choice option").forEach((option) => {
      option.disabled = sure && option.value === answer.label;
    });
    const select = card.querySelector(".feedback-choice select");
    if (select) {
      const first = Array.from(select.options).find((option) => !option.disabled);
      select.value = first ? first.value : "";
    }
    return { card, sentence };
  }

  function errorResult(answer, caption) {
    const card = cloneCard(errorTemplate);
    card.querySelector(".result-caption").textContent = caption;
    card.querySelector(".result-error-sentence").textContent = answer.error;
    return { card, sentence: `${caption}: ${answer.error}` };
  }

  function showResults(answers, files) {
    const several = files.length > 1;
    const made = answers.map((answer, index) => {
      const caption = several ?
        `Photo ${index + 1} of ${files.length}: ${nameOf(files[index])}` : "Your photo";
      const shown = answer.error ? errorResult(answer, caption) : fillResult(answer, caption);
      if (!answer.error) {
        cardFiles.set(shown.card, files[index]);
      }
      return shown;
    });
    resultSection.replaceChildren(...made.map((shown) => shown.card));
    resultSection.hidden = false;
    say(made.map((shown) => shown.sentence).join(". "), { visible: false });
  }

  async function classify(files) {
    showError("");
    const several = files.length > 1;
    const body = new FormData();
    files.forEach((file) => body.append(several ? "files" : "file", file, nameOf(file)));
    setBusy(submitButton, true);
    form.setAttribute("aria-busy", "true");
    say(several ? `Classifying ${files.length} photos…` : "Classifying…");
    try {
      const answer = await post(`${several ? severalUrl : apiUrl}?thumbnail=1`, body);
      preview.hidden = true; // the results show the photos now
      showResults(several ? answer.results : [answer], files);
      const reduced = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
      resultSection.scrollIntoView({ behavior: reduced ? "auto" : "smooth", block: "nearest" });
    } catch (error) {
      // nothing from earlier photos stays on screen under the error
      clearResults();
      say("");
      showError(error.message);
    } finally {
      setBusy(submitButton, false);
      form.removeAttribute("aria-busy");
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!chosen.length) {
      clearResults();
      showError(rejection || "Choose a photo to upload.");
      fileInput.focus();
      return;
    }
    classify(chosen);
  });

  // --- examples -------------------------------------------------------------------------------

  if (examplesForm) {
    examplesForm.addEventListener("submit", async (event) => {
      const button = event.submitter;
      const image = button && button.querySelector("img");
      if (!image) {
        return; // the plain form posts it
      }
      event.preventDefault();
      clearPreview();
      chosen = [];
      rejection = "";
      let file;
      try {
        const response = await fetch(image.src, { credentials: "same-origin" });
        if (!response.ok) {
          throw new Error(String(response.status));
        }
        const name = `example ${button.value.replace("/", " ")}`;
        file = new File([await response.blob()], name, { type: "image/jpeg" });
      } catch (error) {
        clearResults();
        showError("That example could not be loaded: reload the page and pick it again.");
        return;
      }
      classify([file]);
    });
  }

  // --- the result's buttons ------------------------------------------------------------------
  // Only a result made here has its photo in hand; a result the server rendered after a plain
  // form post is left to its own forms.

  async function explain(whyForm, card, file) {
    const button = whyForm.querySelector(".why-button");
    const whyStatus = whyForm.querySelector(".why-status");
    const body = new FormData();
    body.append("file", file, nameOf(file));
    setBusy(button, true);
    whyStatus.textContent = "Working out where the model looked…";
    try {
      const answer = await post(`${apiUrl}?explain=1`, body);
      const figure = card.querySelector(".result-why");
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

  async function sendFeedback(feedbackForm, submitter, file) {
    const feedbackStatus = feedbackForm.querySelector(".feedback-status");
    const label = submitter && submitter.name === "label" ?
      submitter.value : feedbackForm.elements.label.value;
    const body = new FormData();
    body.append("csrf_token", feedbackForm.elements.csrf_token.value);
    body.append("label", label);
    body.append("file", file, nameOf(file));
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
    const target = event.target;
    const card = target.closest(".result-card");
    const file = card && cardFiles.get(card);
    if (!file) {
      return;
    }
    if (target.classList.contains("why-form")) {
      event.preventDefault();
      explain(target, card, file);
    } else if (target.classList.contains("feedback-form")) {
      event.preventDefault();
      sendFeedback(target, event.submitter, file);
    }
  });
})();
