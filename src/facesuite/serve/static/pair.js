// Pair page: /verify with both aligned crops, the distance drawn on the calibrated scale: where
// the threshold and the distances at FAR 1% and 0.1% lie (from the calibration, `far_marks`).
"use strict";

const SCALE_WIDTH = 420;

function mark(scale, position, className, label) {
  const element = document.createElement("div");
  element.className = `mark ${className}`;
  element.style.left = `${position}px`;
  if (label) {
    const text = document.createElement("span");
    text.textContent = label;
    element.appendChild(text);
  }
  scale.appendChild(element);
  return element;
}

function drawScale(result) {
  const scale = document.getElementById("scale");
  scale.replaceChildren();
  const marks = result.far_marks || [];
  // Wide enough for every mark and the pair; the interesting part of a cosine scale is near 0.
  const end = Math.min(2, Math.max(0.25, 1.2 * result.distance, ...marks.map((m) => 1.5 * m.threshold), 1.5 * result.threshold));
  const at = (distance) => Math.min(distance, end) / end * SCALE_WIDTH;
  const accept = document.createElement("div");
  accept.className = "accept";
  accept.style.width = `${at(result.threshold)}px`;
  scale.appendChild(accept);
  // Stricter rates lie to the left: their labels end at their mark, so neighbouring labels never overlap.
  marks.forEach((m, index) => {
    const side = index < marks.length - 1 ? "far label-left" : "far";
    mark(scale, at(m.threshold), side, `FAR ${(m.far * 100).toLocaleString()}%`).dataset.far = m.far;
  });
  mark(scale, at(result.threshold), "threshold", null);
  // Without a face on both sides nothing was compared: no distance to place.
  if (result.decision !== "no face") mark(scale, at(result.distance), `pair ${decisionClass(result.decision)}`, result.distance.toFixed(3)).id = "distance-mark";
  const farNote = marks.length ? ` Grey marks: the distance at which ${marks.map((m) => `${m.far * 100}%`).join(" / ")} of different people would be accepted.` : "";
  document.getElementById("scale-note").textContent =
    `cosine distance, 0 to ${end.toFixed(2)}; green: accepted as the same person (threshold ${result.threshold.toFixed(3)}).${farNote}`;
}

// Which images a per-image flag names, in words: "image 1", "image 1 and image 2".
function whichImages(flags) {
  return flags.map((on, i) => (on ? `image ${i + 1}` : null)).filter(Boolean).join(" and ");
}

// Each decision of /verify as itself: its own colour (style.css) ...
function decisionClass(decision) {
  return { same: "same", different: "different", unrecognisable: "unrecognisable", "no face": "no-face" }[decision] ?? "undecided";
}

// ... and its own words.
function verdictText(result) {
  switch (result.decision) {
    case "same": return "Same person";
    case "different": return "Different people";
    case "unrecognisable": {
      const poor = whichImages(result.quality.map((q) => q !== null && q < result.quality_floor));
      return `Unrecognisable: the face in ${poor} is too poor to recognise (no decision)`;
    }
    case "no face": return `No face found in ${whichImages(result.no_face)}`;
    default: return result.decision;
  }
}

document.getElementById("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  const first = document.getElementById("image1").files[0];
  const second = document.getElementById("image2").files[0];
  if (!first || !second) {
    showError("Choose two images.");
    return;
  }
  const button = document.getElementById("submit");
  button.disabled = true;
  try {
    const data = new FormData();
    data.append("image1", first);
    data.append("image2", second);
    const result = await (await postForm("/verify?images=true", data)).json();
    document.getElementById("crop1").src = result.crops[0];
    document.getElementById("crop2").src = result.crops[1];
    const verdict = document.getElementById("verdict");
    verdict.textContent = verdictText(result);
    verdict.className = `verdict decision ${decisionClass(result.decision)}`;
    verdict.dataset.decision = result.decision;
    // One rule, two questions (facesuite.decide): a gallery search is held tighter than a pair.
    const searchNote = document.getElementById("search-note");
    const stricter = result.same && result.search_threshold !== null && result.distance > result.search_threshold;
    searchNote.textContent = stricter
      ? `A gallery search would answer unknown: it holds these faces to ${result.search_threshold.toFixed(4)}, ` +
        "as a stranger gets one chance per enrolled person."
      : "";
    drawScale(result);
    fillTable(document.getElementById("fields"), [
      ["distance", result.decision === "no face" ? "— (nothing compared)" : result.distance.toFixed(4)],
      ["quality", result.quality.map((q) => (q === null ? "—" : q.toFixed(3))).join(" / ")],
      ["threshold", `${result.threshold.toFixed(4)} (${result.threshold_source})`],
      ["face found", result.no_face.map((none, i) => (none ? "no" : result.fallback[i] ? "yes (centre box judged a face)"
        : result.faces_in_image[i] > 1 ? `yes, ${result.faces_in_image[i]} faces: the most prominent compared` : "yes")).join(" / ")],
    ]);
    document.getElementById("result").classList.remove("hidden");
  } catch (error) {
    document.getElementById("result").classList.add("hidden");
    showError(error.message);
  } finally {
    button.disabled = false;
  }
});
