// Cluster page: several photos in, one strip of faces per person out (largest group first),
// then the faces left unclustered with their reason.
"use strict";

function faceCard(face, caption) {
  const card = document.createElement("figure");
  card.className = "person";
  card.dataset.photo = face.photo;
  card.dataset.face = face.face;
  const img = document.createElement("img");
  img.className = "thumb";
  img.alt = `${face.photo}, face ${face.face}`;
  img.title = img.alt;
  img.src = face.thumbnail;
  const text = document.createElement("figcaption");
  text.textContent = caption;
  card.append(img, text);
  return card;
}

function strip(title, faces, caption, attributes) {
  const block = document.createElement("section");
  block.className = "cluster";
  Object.assign(block.dataset, attributes);
  const heading = document.createElement("h3");
  heading.textContent = title;
  const row = document.createElement("div");
  row.className = "people";
  row.append(...faces.map((face) => faceCard(face, caption(face))));
  block.append(heading, row);
  return block;
}

document.getElementById("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  const files = document.getElementById("images").files;
  if (!files.length) {
    showError("choose some photos first");
    return;
  }
  const form = new FormData();
  for (const file of files) form.append("image", file);
  const button = document.getElementById("submit");
  button.disabled = true;
  button.classList.add("busy");
  try {
    const result = await (await postForm("/cluster", form)).json();
    document.getElementById("summary").textContent =
      `${result.photos} photos, ${result.faces} faces: ${result.clusters.length} ${result.clusters.length === 1 ? "person" : "people"}, ` +
      `${result.unclustered.length} faces left unclustered`;
    const blocks = result.clusters.map((cluster) => strip(
      `${cluster.name || `person ${cluster.id + 1}`}: ${cluster.size} ${cluster.size === 1 ? "face" : "faces"}`,
      cluster.faces, (face) => face.photo, { cluster: cluster.id }));
    if (result.unclustered.length) {
      blocks.push(strip("Left unclustered", result.unclustered, (face) => `${face.photo}: ${face.reason}`, { unclustered: "" }));
    }
    document.getElementById("clusters").replaceChildren(...blocks);
  } catch (error) {
    showError(error.message);
  } finally {
    button.disabled = false;
    button.classList.remove("busy");
  }
});
