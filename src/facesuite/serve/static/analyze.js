// Analyze page: /analyze (every face, and the decoded image to draw them on) for the fields and crops, /explain for the Grad-CAM overlay;
// both asked at once, each panel showing a spinner until its answer is in.
"use strict";

const form = document.getElementById("form");
const PANELS = ["panel-face", "panel-crop", "panel-cam", "panel-result"];
const BOX_COLOURS = ["#00e05a", "#ffb000", "#00b7ff", "#ff4d9a", "#b07cff", "#ffffff"];

function loading(id, on) {
  document.getElementById(id).classList.toggle("loading", on);
}

function drawBoxes(result) {
  // The server sends the image it decoded (any format it reads: PGM, TIFF, ...), so the browser
  // never has to decode the upload itself; boxes are in the upload's own pixels (result.size).
  const canvas = document.getElementById("canvas");
  const note = document.getElementById("canvas-note");
  const image = new Image();
  image.onload = () => {
    canvas.width = Math.min(420, image.naturalWidth);
    canvas.height = image.naturalHeight * canvas.width / image.naturalWidth;
    const scale = canvas.width / result.size[0];
    const ctx = canvas.getContext("2d");
    ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    ctx.lineWidth = 3;
    ctx.font = "bold 14px system-ui, sans-serif";
    result.faces.forEach((face, index) => {
      const [x1, y1, x2, y2] = face.box.map((v) => v * scale);
      ctx.strokeStyle = ctx.fillStyle = face.no_face ? "#9a9a9a" : BOX_COLOURS[index % BOX_COLOURS.length];
      // A box that holds no face is drawn dashed and says so: it is where a face was looked for.
      ctx.setLineDash(face.no_face ? [6, 4] : []);
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      if (face.no_face) ctx.fillText("no face", x1 + 3, Math.max(14, y1 - 4));
      if (result.faces.length > 1) ctx.fillText(String(index + 1), x1 + 3, Math.max(14, y1 - 4));
    });
    canvas.classList.remove("hidden");
    loading("panel-face", false);
  };
  image.onerror = () => {
    canvas.classList.add("hidden");
    note.textContent = "the preview of this image could not be drawn";
    loading("panel-face", false);
  };
  image.src = result.preview;
}

// Each identity decision as itself: its style.css class (colour) and its words; null without a gallery.
function identityDecision(face) {
  if (face.identity === null) return null;
  const distance = face.distance === null ? "" : ` (distance ${face.distance.toFixed(3)})`;
  if (face.match_kind === "source") {
    const photo = (face.source_photo || "").split(/[\\/]/).pop();
    return ["source", `${face.identity}: a processed copy of their enrolled photo ${photo}`];
  }
  switch (face.identity) {
    case "unknown": return ["unknown", `unknown: nobody in the gallery is close enough${distance}`];
    case "unrecognisable": return ["unrecognisable", "unrecognisable: the face is too poor to recognise"];
    case "no face": return ["no-face", "no face: nothing to recognise"];
    default: return ["named", `${face.identity}${distance}`];
  }
}

function showIdentity(face) {
  const line = document.getElementById("identity");
  const decision = identityDecision(face);
  line.classList.toggle("hidden", decision === null);
  if (decision === null) return;
  line.className = `verdict decision ${decision[0]}`;
  line.dataset.decision = decision[0];
  line.textContent = decision[1];
}

function describe(face) {
  const identity = identityDecision(face)?.[1] ?? "no gallery";
  if (face.no_face) {
    return [
      ["face", `no face found (face probability ${face.face_probability === null ? "n/a" : face.face_probability.toFixed(3)}): nothing is decided`],
      ["identity", identity],
      ["box", face.box.join(", ")],
    ];
  }
  const gender = face.gender === null ? null : `${face.gender} (p_female ${face.p_female.toFixed(3)})`;
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
  if (face.match_kind) rows.push(["matched by", face.match_kind === "source" ? "the source photo (the whole frame)" : "the face"]);
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
    caption.textContent = `${index + 1}: ${face.gender ?? "?"} · ${face.distortion} → ${face.route}`;
    const decision = identityDecision(face);
    if (decision !== null) {
      const who = document.createElement("span");
      who.className = `decision ${decision[0]}`;
      who.dataset.decision = decision[0];
      who.textContent = face.match_kind === "source" ? `${face.identity} (source photo)` : face.identity;
      caption.append(document.createElement("br"), who);
    }
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
  const result = await (await postForm("/analyze?images=true&all_faces=true&preview=true", data)).json();
  drawBoxes(result);
  document.getElementById("crop").src = result.crop;
  loading("panel-crop", false);
  showIdentity(result);
  fillTable(document.getElementById("fields"), describe(result));
  document.getElementById("quality-floor").textContent = result.quality_floor === null ? "" : ` (${result.quality_floor})`;
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
  document.getElementById("canvas-note").textContent = "";
  document.getElementById("identity").classList.add("hidden");
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
