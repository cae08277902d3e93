// Analyze page: /analyze for the fields and crop, /explain for the Grad-CAM overlay.
"use strict";

const form = document.getElementById("form");

function drawBox(file, box) {
  // The browser decodes the file itself, so only the box travels back from the server.
  const canvas = document.getElementById("canvas");
  const image = new Image();
  image.onload = () => {
    const scale = Math.min(1, 420 / image.naturalWidth);
    canvas.width = image.naturalWidth * scale;
    canvas.height = image.naturalHeight * scale;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    ctx.strokeStyle = "#00e05a";
    ctx.lineWidth = 3;
    const [x1, y1, x2, y2] = box.map((v) => v * scale);
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    URL.revokeObjectURL(image.src);
  };
  image.src = URL.createObjectURL(file);
}

async function showGradcam(file) {
  const cam = document.getElementById("cam");
  const note = document.getElementById("cam-note");
  const data = new FormData();
  data.append("image", file);
  try {
    const response = await postForm("/explain", data);
    cam.src = URL.createObjectURL(await response.blob());
    cam.classList.remove("hidden");
    note.textContent = `explains: ${response.headers.get("X-Gender")}`;
  } catch (error) {
    cam.classList.add("hidden");
    note.textContent = error.message;
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = document.getElementById("image").files[0];
  showError("");
  if (!file) {
    showError("Choose an image first.");
    return;
  }
  const button = document.getElementById("submit");
  button.disabled = true;
  button.textContent = "Analyzing…";
  try {
    const data = new FormData();
    data.append("image", file);
    const result = await (await postForm("/analyze?images=true", data)).json();
    drawBox(file, result.box);
    document.getElementById("crop").src = result.crop;
    const gender = result.gender === null ? null : `${result.gender} (p_female ${result.p_female.toFixed(3)})`;
    const identity = result.identity === null ? "no gallery" : `${result.identity} (distance ${result.distance.toFixed(3)})`;
    fillTable(document.getElementById("fields"), [
      ["gender", gender],
      ["distortion", `${result.distortion} (p ${result.distortion_probability.toFixed(3)})`],
      ["route", result.route],
      ["identity", identity],
      ["detector score", result.fallback ? "no face found: centre box used" : result.score.toFixed(3)],
      ["box", result.box.join(", ")],
    ]);
    document.getElementById("result").classList.remove("hidden");
    await showGradcam(file);
  } catch (error) {
    document.getElementById("result").classList.add("hidden");
    showError(error.message);
  } finally {
    button.disabled = false;
    button.textContent = "Analyze";
  }
});

fetch("/gallery").then((r) => r.json()).then((g) => {
  document.getElementById("gallery-status").textContent = g.exists
    ? `gallery: ${g.identities.length} identities, ${g.faces} faces`
    : "no gallery yet: identity is not shown (enroll people on the Gallery page)";
}).catch(() => {});
