// The admin console's page: views of the manager's status, the players
// online and the recent errors, refreshed every few seconds, and the
// actions (drain, upgrade, kick, broadcast, mute), each after a
// confirmation, posted with the session's CSRF token. Everything shown is
// set as text, never as markup. See docs/console.md.

/** Milliseconds between refreshes of each view. */
const REFRESH = { processes: 2000, players: 5000, errors: 5000 };

const $ = (selector) => document.querySelector(selector);
let csrf = null;
let view = null;
let timer = null;
let playersAfter = "";
let mapLoaded = false;

async function api(path, options = {}) {
  const response = await fetch(`/api/${path}`, { credentials: "same-origin", ...options });
  let body;
  try {
    body = await response.json();
  } catch {
    body = { ok: false, error: `${response.status} ${response.statusText}` };
  }
  if (response.status === 403) notice("the session has ended: log in again with mmo-admin console", true);
  return body;
}

function notice(text, error = false) {
  const element = $("#notice");
  element.textContent = text;
  element.className = error ? "error" : "";
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "-" : String(text);
  if (className) td.className = className;
  return td;
}

function button(td, label, id, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.id = id;
  b.addEventListener("click", onClick);
  td.append(b);
}

/** Ask before acting: resolves to {ok, reason} (reason: the dialog's text field, if asked for). */
function confirmAction(text, reasonName = null) {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = text;
  $("#confirm-reason-label").hidden = reasonName === null;
  $("#confirm-reason-name").textContent = reasonName ?? "";
  $("#confirm-reason").value = "";
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => resolve({ ok: dialog.returnValue === "yes", reason: $("#confirm-reason").value }),
      { once: true },
    );
    dialog.showModal();
  });
}

async function act(command, args, what) {
  notice(`${what}: working...`);
  const answer = await api(`action/${command}`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-csrf-token": csrf },
    body: JSON.stringify(args),
  });
  if (answer.ok) notice(`${what}: done`);
  else notice(`${what}: ${answer.error}`, true);
  refresh();
  return answer;
}

// -- processes --------------------------------------------------------------------

function megabytes(rss) {
  return typeof rss === "number" ? `${(rss / 2 ** 20).toFixed(1)} MB` : "-";
}

function showStatus(status) {
  $("#manager").textContent = `${status.manager} (mmo ${status.version})`;
  const body = $("#processes tbody");
  body.replaceChildren();
  const directory = status.directory ?? {};
  const rows = Object.entries(status.processes).map(([name, row]) => [name, row, true]);
  for (const [name, info] of Object.entries(directory).sort()) {
    if (!(name in status.processes) && info && typeof info === "object") {
      rows.push([name, { kind: info.kind, state: "-", pid: info.pid, restarts: null }, false]);
    }
  }
  for (const [name, row, mine] of rows) {
    const info = directory[name] ?? {};
    const tr = body.insertRow();
    tr.dataset.process = name;
    tr.className = `state-${row.state}`;
    cell(tr, name);
    cell(tr, row.kind);
    cell(tr, info.draining ? `${row.state} (draining)` : row.state, "state");
    cell(tr, info.version);
    cell(tr, row.pid ?? info.pid);
    cell(tr, row.restarts);
    cell(tr, info.load);
    cell(tr, info.players);
    cell(tr, info.entities);
    const tick = info.tick_ms;
    cell(tr, tick && typeof tick === "object" ? `${tick.p50} / ${tick.p99}` : null);
    cell(tr, megabytes(info.rss));
    const actions = tr.insertCell();
    if (mine && row.kind !== "redis") {
      if (row.kind === "gateway" && row.state === "running") {
        button(actions, "Drain", `drain-${name}`, async () => {
          const { ok } = await confirmAction(
            `Drain ${name}? Its players move to the other gateways, then it stops until an upgrade starts it.`,
          );
          if (ok) await act("drain", { process: name }, `drain ${name}`);
        });
      }
      button(actions, "Upgrade", `upgrade-${name}`, async () => {
        const { ok } = await confirmAction(`Upgrade ${name}? A new process running the installed code replaces it.`);
        if (ok) await act("upgrade", { process: name }, `upgrade ${name}`);
      });
    }
  }
  const regions = $("#regions tbody");
  regions.replaceChildren();
  for (const [name, region] of Object.entries(status.regions ?? {})) {
    const tr = regions.insertRow();
    cell(tr, name);
    cell(tr, region.process);
    cell(tr, `(${region.box.join(", ")})`);
  }
}

// -- players ----------------------------------------------------------------------

function showPlayers(result) {
  const body = $("#players tbody");
  body.replaceChildren();
  let more = false;
  let last = playersAfter;
  for (const [gateway, answer] of Object.entries(result.gateways ?? {}).sort()) {
    if (answer.error) {
      const tr = body.insertRow();
      cell(tr, `${gateway}: ${answer.error}`).colSpan = 6;
      continue;
    }
    for (const session of answer.sessions) {
      const tr = body.insertRow();
      tr.dataset.account = session.account;
      tr.dataset.gateway = gateway;
      cell(tr, session.name);
      cell(tr, session.character);
      cell(tr, gateway, "gateway");
      cell(tr, session.zone);
      cell(tr, session.attached ? "yes" : "no (may resume)");
      const actions = tr.insertCell();
      button(actions, "Kick", `kick-${session.name}`, async () => {
        const { ok, reason } = await confirmAction(`Kick ${session.name}? Their session ends.`, "Reason");
        if (ok) await act("kick", { account: session.account, reason }, `kick ${session.name}`);
      });
      button(actions, "Mute", `mute-${session.name}`, async () => {
        const { ok, reason } = await confirmAction(`Mute ${session.name} in chat for 10 minutes?`, "Reason");
        if (ok) await act("mute", { name: session.name, seconds: 600, reason }, `mute ${session.name}`);
      });
      if (session.session > last) last = session.session;
    }
    more ||= answer.more;
  }
  $("#players-more").hidden = !more;
  $("#players-next").onclick = () => {
    playersAfter = last;
    refresh();
  };
}

// -- errors -----------------------------------------------------------------------

function showErrors(result) {
  const body = $("#errors tbody");
  body.replaceChildren();
  for (const line of result.errors) {
    const tr = body.insertRow();
    cell(tr, new Date(line.time * 1000).toISOString());
    cell(tr, line.process);
    cell(tr, line.text, "line");
  }
}

// -- views ------------------------------------------------------------------------

async function refresh() {
  clearTimeout(timer);
  const shown = view;
  try {
    if (shown === "processes") {
      const answer = await api("status");
      if (answer.ok) showStatus(answer.result);
    } else if (shown === "players") {
      const query = playersAfter ? `?after=${encodeURIComponent(playersAfter)}` : "";
      const answer = await api(`players${query}`);
      if (answer.ok) showPlayers(answer.result);
    } else if (shown === "errors") {
      const answer = await api("errors");
      if (answer.ok) showErrors(answer.result);
    }
  } catch (e) {
    notice(`cannot reach the manager: ${e}`, true);
  }
  if (shown === view && REFRESH[view]) timer = setTimeout(refresh, REFRESH[view]);
}

async function show(name) {
  if (!document.getElementById(`view-${name}`)) name = "processes";
  view = name;
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${name}`;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.view === name);
  if (name === "players") playersAfter = "";
  if (name === "map" && !mapLoaded) {
    mapLoaded = true;
    // The live map's own module draws into #world-map (docs/console.md).
    import("/map/map.js").catch((e) => notice(`the live map is not served here: ${e.message}`, true));
  }
  refresh();
}

async function start() {
  const session = await api("session");
  if (!session.csrf) return;
  csrf = session.csrf;
  $("#broadcast-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("#broadcast-text").value;
    const { ok } = await confirmAction(`Broadcast to every player: "${text}"?`);
    if (ok) await act("broadcast", { text }, "broadcast");
  });
  $("#logout").addEventListener("click", async () => {
    await fetch("/logout", { method: "POST", headers: { "x-csrf-token": csrf } });
    location.reload();
  });
  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
  show(location.hash.slice(1) || "processes");
}

start();
