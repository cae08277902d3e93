// Analyze page: /analyze (every face) for the fields and crops, /explain for the Grad-CAM overlay;
// both asked at once, each panel showing a spinner until its answer is in.
"use strict";

const form = document.getElementById("form");
const PANELS = ["panel-face", "panel-crop", "panel-cam", "panel-result"];
const BOX_COLOURS = ["#00e05a", "#ffb000", "#00b7ff", "#ff4d9a", "#b07cff", "#ffffff"];

function loading(id, on) {
  document.getElementById(id).classList.toggle("loading", on);
}

function drawBoxes(file, faces) {
  // The browser decodes the file itself, so only the boxes travel back from the server.
  const canvas = document.getElementById("canvas");
  const image = new Image();
  image.onload = () => {
    const scale = Math.min(1, 420 / image.naturalWidth);
    canvas.width = image.naturalWidth * scale;
    canvas.height = image.naturalHeight * scale;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    ctx.lineWidth = 3;
    ctx.font = "bold 14px system-ui, sans-serif";
    faces.forEach((face, index) => {
      const [x1, y1, x2, y2] = face.box.map((v) => v * scale);
      ctx.strokeStyle = ctx.fillStyle = face.no_face ? "#9a9a9a" : BOX_COLOURS[index % BOX_COLOURS.length];
      // A box that holds no face is drawn dashed and says so: it is where a face was looked for.
      ctx.setLineDash(face.no_face ? [6, 4] : []);
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      if (face.no_face) ctx.fillText("no face", x1 + 3, Math.max(14, y1 - 4));
      if (faces.length > 1) ctx.fillText(String(index + 1), x1 + 3, Math.max(14, y1 - 4));
    });
    URL.revokeObjectURL(image.src);
    loading("panel-face", false);
  };
  image.src = URL.createObjectURL(file);
}

function describe(face) {
  if (face.no_face) {
    return [
      ["face", `no face found (face probability ${face.face_probability === null ? "n/a" : face.face_probability.toFixed(3)}): nothing is decided`],
      ["box", face.box.join(", ")],
    ];
  }
  const gender = face.gender === null ? null : `${face.gender} (p_female ${face.p_female.toFixed(3)})`;
  const identity = face.identity === null ? "no gallery" : `${face.identity} (distance ${face.distance.toFixed(3)})`;
  // The route is chosen by the distortion detector: its verdict and confidence are the evidence.
  const evidence = face.distortion === null ? null
    : `detector says ${face.distortion} (p ${face.distortion_probability.toFixed(3)}), so ${face.route}`;
  const age = face.age === null || face.age === undefined ? null
    : `${face.age.toFixed(0)} (80% interval ${face.age_range[0].toFixed(0)}-${face.age_range[1].toFixed(0)})`;
  const rows = [
    ["gender", gender],
    ["age", age],
    ["distortion", face.distortion === null ? null : `${face.distortion} (p ${face.distortion_probability.toFixed(3)})`],
    ["route", face.route],
    ["why this route", evidence],
  ];
  if (face.quality !== null && face.quality !== undefined) rows.push(["quality", face.quality.toFixed(3)]);
  rows.push(["identity", identity]);
  if (face.match_kind) rows.push(["match", face.match_kind]);
  rows.push(["detector score", face.fallback ? "detector found none: centre box, judged a face" : face.score.toFixed(3)]);
  if (face.turn) rows.push(["turned", `photo turned ${face.turn}° to find the face upright`]);
  rows.push(["box", face.box.join(", ")]);
  return rows;
}

function showFaces(faces) {
  const panel = document.getElementById("panel-faces");
  panel.classList.toggle("hidden", faces.length < 2);
  document.getElementById("faces-title").textContent = `Every face (${faces.length})`;
  document.getElementById("faces").replaceChildren(...faces.map((face, index) => {
    const card = document.createElement("figure");
    card.className = "person face-card";
    const img = document.createElement("img");
    img.className = "thumb";
    img.src = face.crop;
    img.alt = `face ${index + 1}`;
    img.style.outline = `3px solid ${BOX_COLOURS[index % BOX_COLOURS.length]}`;
    const caption = document.createElement("figcaption");
    const who = face.identity === null ? "" : ` · ${face.identity}`;
    caption.textContent = `${index + 1}: ${face.gender ?? "?"}${who} · ${face.distortion} → ${face.route}`;
    card.append(img, caption);
    return card;
  }));
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
    note.textContent = `explains: ${response.headers.get("X-Gender")} (the main face)`;
  } catch (error) {
    cam.classList.add("hidden");
    note.textContent = error.message;
  } finally {
    loading("panel-cam", false);
  }
}

async function showAnalysis(file) {
  const data = new FormData();
  data.append("image", file);
  const result = await (await postForm("/analyze?images=true&all_faces=true", data)).json();
  drawBoxes(file, result.faces);
  document.getElementById("crop").src = result.crop;
  loading("panel-crop", false);
  fillTable(document.getElementById("fields"), describe(result));
  loading("panel-result", false);
  showFaces(result.faces);
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
  button.classList.add("busy");
  button.textContent = "Analyzing";
  // Every panel shows at once, each with a spinner until its own answer arrives.
  for (const id of PANELS) loading(id, true);
  document.getElementById("crop").removeAttribute("src");
  document.getElementById("cam").removeAttribute("src");
  document.getElementById("cam-note").textContent = "";
  document.getElementById("fields").replaceChildren();
  document.getElementById("panel-faces").classList.add("hidden");
  document.getElementById("result").classList.remove("hidden");
  try {
    await Promise.all([showAnalysis(file), showGradcam(file)]);
  } catch (error) {
    document.getElementById("result").classList.add("hidden");
    showError(error.message);
  } finally {
    for (const id of PANELS) loading(id, false);
    button.disabled = false;
    button.classList.remove("busy");
    button.textContent = "Analyze";
  }
});

fetch("/gallery").then((r) => r.json()).then((g) => {
  document.getElementById("gallery-status").textContent = g.exists
    ? `gallery: ${g.identities.length} identities, ${g.faces} faces`
    : "no gallery yet: identity is not shown (enroll people on the Gallery page)";
}).catch(() => {});
