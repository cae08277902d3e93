// Gallery page: every enrolled identity with its face picture; enroll new ones, remove any.
"use strict";

function initials(name) {
  return name.split(/[\s_]+/).filter(Boolean).slice(0, 2).map((part) => part[0].toUpperCase()).join("");
}

function personCard(entry) {
  const card = document.createElement("figure");
  card.className = "person";
  card.dataset.identity = entry.identity;
  // Initials where the server has no picture: enrolled elsewhere into a gallery that keeps no photos.
  const none = document.createElement("div");
  none.className = "thumb placeholder";
  none.title = "no picture: this gallery keeps no photo of this identity";
  none.textContent = initials(entry.identity);
  if (entry.thumbnail) {
    const img = document.createElement("img");
    img.className = "thumb";
    img.alt = `face of ${entry.identity}`;
    img.loading = "lazy";  // a picture not made yet is made when it is first asked for
    img.addEventListener("error", () => img.replaceWith(none));
    img.src = `/gallery/thumbnail?identity=${encodeURIComponent(entry.identity)}`;
    card.appendChild(img);
  } else {
    card.appendChild(none);
  }
  const caption = document.createElement("figcaption");
  const name = document.createElement("strong");
  name.textContent = entry.identity;
  caption.append(name, document.createElement("br"), `${entry.faces} ${entry.faces === 1 ? "face" : "faces"}`);
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "remove";
  remove.textContent = "Remove";
  remove.addEventListener("click", async () => {
    if (!window.confirm(`Remove ${entry.identity} and all their faces from the gallery?`)) return;
    showError("");
    try {
      const result = await (await request("DELETE", `/gallery?identity=${encodeURIComponent(entry.identity)}`)).json();
      document.getElementById("message").textContent = `removed ${result.identity} (${result.removed} faces)`;
      await refresh();
    } catch (error) {
      showError(error.message);
    }
  });
  caption.append(document.createElement("br"), remove);
  card.appendChild(caption);
  return card;
}

async function refresh() {
  const gallery = await (await fetch("/gallery")).json();
  document.getElementById("summary").textContent = gallery.exists
    ? `${gallery.path}: ${gallery.identities.length} identities, ${gallery.faces} faces, threshold ${gallery.threshold}`
    : `${gallery.path}: empty (nothing enrolled yet)`;
  document.getElementById("identities").replaceChildren(...gallery.identities.map(personCard));
}

document.getElementById("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  const data = new FormData();
  data.append("identity", document.getElementById("identity").value.trim());
  for (const file of document.getElementById("images").files) data.append("image", file);
  const button = document.getElementById("submit");
  button.disabled = true;
  button.classList.add("busy");
  try {
    const result = await (await postForm("/gallery/enroll", data)).json();
    const skipped = result.skipped.length ? `; skipped ${result.skipped.join(", ")}` : "";
    document.getElementById("message").textContent = `enrolled ${result.enrolled} faces of ${result.identity}${skipped}`;
    document.getElementById("form").reset();
    await refresh();
  } catch (error) {
    showError(error.message);
  } finally {
    button.disabled = false;
    button.classList.remove("busy");
  }
});

refresh().catch((error) => showError(error.message));
