// The merchandiser's live dashboard: figures every second, server-drawn SVG charts every two, times in words.
const root = document.getElementById("dashboard");
const UNITS = [["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]];

function pick(data, path) {
  return path.split(".").reduce((value, key) => (value == null ? value : value[key]), data);
}

function plural(count, name) {
  return `${count} ${name}${count === 1 ? "" : "s"}`;
}

// Says a duration as waitingroom.dashboard.duration_words does: two units at most ("2 minutes 5 seconds").
export function durationWords(seconds) {
  seconds = Math.max(0, Math.floor(seconds));
  for (let index = 0; index < UNITS.length; index++) {
    const [name, size] = UNITS[index];
    if (seconds >= size || size === 1) {
      let words = plural(Math.floor(seconds / size), name);
      if (index + 1 < UNITS.length) {
        const [nextName, nextSize] = UNITS[index + 1];
        const rest = Math.floor((seconds % size) / nextSize);
        if (rest) words += ` ${plural(rest, nextName)}`;
      }
      return words;
    }
  }
  return "0 seconds";
}

// As waitingroom.dashboard.timeline_words: "Starts in ...", "Started ... ago, ends in ...", "Ended ... ago".
function timelineWords(now) {
  const startsAt = Date.parse(root.dataset.startsAt);
  const endsAt = root.dataset.endsAt ? Date.parse(root.dataset.endsAt) : null;
  if (endsAt !== null && now >= endsAt) return `Ended ${durationWords((now - endsAt) / 1000)} ago`;
  let text = now < startsAt
    ? `Starts in ${durationWords((startsAt - now) / 1000)}`
    : `Started ${durationWords((now - startsAt) / 1000)} ago`;
  if (endsAt !== null) text += `, ends in ${durationWords((endsAt - now) / 1000)}`;
  return text;
}

async function refresh() {
  try {
    const response = await fetch(root.dataset.json, { credentials: "same-origin" });
    if (!response.ok) return;
    const data = await response.json();
    if (data.status.state !== root.dataset.state) {
      // The drop changed state (started, sold out, ended): the page offers other controls now.
      window.location.reload();
      return;
    }
    for (const element of root.querySelectorAll("[data-field]")) {
      const value = pick(data, element.dataset.field);
      element.textContent = value == null ? "–" : value;
    }
  } catch (err) {
    // a missed refresh is retried on the next tick
  }
}

function refreshCharts() {
  for (const image of root.querySelectorAll("img[data-chart]")) {
    const url = new URL(image.src);
    url.searchParams.set("t", Date.now());
    image.src = url.toString();
  }
}

function tickClock() {
  document.getElementById("timeline").textContent = timelineWords(Date.now());
}

if (root) {
  setInterval(refresh, 1000);
  setInterval(refreshCharts, 2000);
  setInterval(tickClock, 1000);
  tickClock();
}
