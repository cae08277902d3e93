// Gallery page: list the enrolled identities, enroll new ones.
"use strict";

async function refresh() {
  const gallery = await (await fetch("/gallery")).json();
  document.getElementById("summary").textContent = gallery.exists
    ? `${gallery.path}: ${gallery.identities.length} identities, ${gallery.faces} faces, threshold ${gallery.threshold}`
    : `${gallery.path}: empty (nothing enrolled yet)`;
  const table = document.getElementById("identities");
  table.replaceChildren();
  for (const entry of gallery.identities) {
    const row = document.createElement("tr");
    cell(row, entry.identity);
    cell(row, `${entry.faces} faces`);
    table.appendChild(row);
  }
}

document.getElementById("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  const data = new FormData();
  data.append("identity", document.getElementById("identity").value.trim());
  for (const file of document.getElementById("images").files) data.append("image", file);
  try {
    const result = await (await postForm("/gallery/enroll", data)).json();
    const skipped = result.skipped.length ? `; skipped ${result.skipped.join(", ")}` : "";
    document.getElementById("message").textContent = `enrolled ${result.enrolled} faces of ${result.identity}${skipped}`;
    await refresh();
  } catch (error) {
    showError(error.message);
  }
});

refresh().catch((error) => showError(error.message));
