// Every page: times in the shopper's own time zone, live countdowns. The words match
// waitingroom/templatetags/shop.py, which renders the same times in UTC for a page without scripts.
export const STATE_LABELS = {
  scheduled: "Coming soon", prequeue: "Waiting room open", live: "On sale now", paused: "Paused",
  sold_out: "Sold out", ended: "Ended",
};

const format = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export function localTime(iso) {
  return format.format(new Date(iso));
}

export function untilText(ms) {
  const seconds = Math.max(0, Math.round(ms / 1000));
  const days = Math.floor(seconds / 86400), hours = Math.floor((seconds % 86400) / 3600);
  const minutes = Math.floor((seconds % 3600) / 60), secs = seconds % 60;
  if (days > 0) return `${days} d ${hours} h`;
  if (hours > 0) return `${hours} h ${String(minutes).padStart(2, "0")} min`;
  if (minutes > 0) return `${minutes} min ${String(secs).padStart(2, "0")} s`;
  return `${secs} s`;
}

function render() {
  for (const element of document.querySelectorAll("time[data-local]")) {
    const at = Date.parse(element.dateTime);
    if (Number.isNaN(at)) continue;
    const when = localTime(at);
    const left = at - Date.now();
    const countdown = element.dataset.countdown;
    element.textContent = countdown && left > 0 ? `${when} (${countdown} in ${untilText(left)})` : when;
  }
}
render();
setInterval(render, 1000);
