import Hummingbird

/// `GET /`: the live dashboard. A shell with no data in it (so it needs no token): its script takes
/// the token from `#token=...` or asks for it, keeps it in sessionStorage, and polls `/status` and
/// `/events`. Self-contained: inline CSS and JS, nothing loaded from elsewhere.
enum DashboardPage {
    static var response: Response {
        Response(
            status: .ok,
            headers: [
                .contentType: "text/html; charset=utf-8",
                .cacheControl: "no-store",
                .contentSecurityPolicy:
                    "default-src 'none'; connect-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
                    + "img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ],
            body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
    }

    static let html = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>UMS Balancer</title>
        <style>
        :root { --bg: #f4f6f8; --card: #fff; --text: #1d2733; --muted: #5f6b7a; --line: #d9dee5;
          --green: #1f8a4c; --amber: #b86e00; --red: #c62828; --blue: #1565c0; --purple: #6a3fb5; --gray: #6b7280; }
        * { box-sizing: border-box; }
        body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
          background: var(--bg); color: var(--text); }
        header { display: flex; align-items: center; gap: 16px; padding: 14px 28px; background: #1d2733; color: #fff; }
        header h1 { margin: 0; font-size: 20px; font-weight: 600; }
        header .meta { margin-left: auto; font-size: 13px; color: #c9d1db; display: flex; gap: 18px; align-items: center; }
        .dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%; background: var(--gray); margin-right: 6px; }
        .dot.ok { background: #3ccf7a; } .dot.bad { background: #ff6b6b; }
        main { padding: 22px 28px; max-width: 1400px; margin: 0 auto; }
        section { margin-bottom: 22px; }
        h2 { font-size: 14px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted); margin: 0 0 10px; }
        .panel { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 16px 20px; }
        .update-head { display: flex; align-items: baseline; gap: 14px; flex-wrap: wrap; }
        .update-head .progress-text { font-size: 22px; font-weight: 600; }
        .bar { height: 16px; background: #e6eaef; border-radius: 8px; overflow: hidden; margin: 12px 0 8px; }
        .bar > div { height: 100%; width: 0; background: var(--blue); transition: width .4s; }
        .bar.state-completed > div { background: var(--green); } .bar.state-stalled > div { background: var(--red); }
        .summary { color: var(--muted); }
        .badge { display: inline-block; padding: 2px 10px; border-radius: 999px; font-size: 13px; font-weight: 600;
          color: #fff; background: var(--gray); }
        .normal, .up, .active, .completed { background: var(--green); }
        .update, .draining, .in-progress { background: var(--amber); }
        .installing, .reconnecting { background: var(--blue); }
        .down, .stalled { background: var(--red); }
        .maintenance { background: var(--purple); }
        .unknown, .idle { background: var(--gray); }
        .flags { display: flex; gap: 8px; flex-wrap: wrap; margin-top: 8px; }
        .badge.flag { background: var(--red); }
        #last-run { margin-top: 6px; }
        .drive { margin-top: 12px; } .drive:empty { display: none; }
        .drive-head { font-weight: 600; margin-bottom: 6px; }
        .drive-step { padding: 3px 0; } .drive-step .badge { min-width: 52px; text-align: center; }
        .done { background: var(--green); } .now { background: var(--blue); } .next { background: var(--gray); }
        .drive-step.stalled { color: var(--red); }
        .nodes { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 14px; }
        .node { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 14px 18px; }
        .node.down { border-color: var(--red); background: #fff6f6; }
        .node h3 { margin: 0 0 10px; font-size: 20px; display: flex; justify-content: space-between; align-items: center; }
        .node dl { display: grid; grid-template-columns: auto 1fr; gap: 6px 14px; margin: 0; }
        .node dt { color: var(--muted); } .node dd { margin: 0; }
        .node .note { margin-top: 8px; font-size: 13px; color: var(--amber); }
        table { width: 100%; border-collapse: collapse; font-size: 14px; }
        th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
        th { color: var(--muted); font-weight: 600; }
        td.time { white-space: nowrap; color: var(--muted); font-variant-numeric: tabular-nums; }
        #login { display: none; }
        #login input { font: inherit; padding: 6px 10px; width: 360px; border: 1px solid var(--line); border-radius: 6px; }
        #login button { font: inherit; padding: 6px 14px; margin-left: 8px; }
        #error { color: var(--red); margin: 8px 0 0; min-height: 1em; }
        .empty { color: var(--muted); }
        </style>
        </head>
        <body>
        <header>
          <h1>UMS Balancer</h1>
          <div class="meta">
            <span><span id="live" class="dot"></span><span id="live-text">connecting</span></span>
            <span id="config"></span>
          </div>
        </header>
        <main>
          <section id="login" class="panel">
            <form id="login-form">
              <label for="token-input">Admin token: </label>
              <input id="token-input" type="password" autocomplete="off" placeholder="contents of the admin token file">
              <button type="submit">Connect</button>
            </form>
          </section>
          <p id="error"></p>
          <section>
            <h2>Update</h2>
            <div class="panel">
              <div class="update-head">
                <span id="update-state" class="badge">…</span>
                <span id="progress-text" class="progress-text"></span>
                <span id="target" class="summary"></span>
              </div>
              <div id="bar" class="bar"><div></div></div>
              <div id="summary" class="summary"></div>
              <div id="flags" class="flags"></div>
              <div id="last-run" class="summary"></div>
              <div id="drive" class="drive"></div>
            </div>
          </section>
          <section>
            <h2>Nodes</h2>
            <div id="nodes" class="nodes"></div>
          </section>
          <section>
            <h2>Recent events</h2>
            <div class="panel">
              <table><thead><tr><th>Time</th><th>Kind</th><th>Node</th><th>By</th><th>What</th></tr></thead>
              <tbody id="events"></tbody></table>
            </div>
          </section>
        </main>
        <script>
        "use strict";
        const KEY = "ums-balancer-token";
        const fragment = new URLSearchParams(location.hash.slice(1));
        if (fragment.get("token")) {
          sessionStorage.setItem(KEY, fragment.get("token"));
          history.replaceState(null, "", location.pathname + location.search);
        }
        const $ = (id) => document.getElementById(id);
        function el(tag, text, cls) {
          const node = document.createElement(tag);
          if (text !== undefined && text !== null) node.textContent = String(text);
          if (cls) node.className = cls;
          return node;
        }
        function badge(value) { return el("span", value, "badge " + value); }
        class Unauthorized extends Error {}
        async function api(path) {
          const token = sessionStorage.getItem(KEY);
          const headers = token ? { Authorization: "Bearer " + token } : {};
          const response = await fetch(path, { headers, cache: "no-store" });
          if (response.status === 401) throw new Unauthorized();
          if (!response.ok) throw new Error(path + ": HTTP " + response.status);
          return response.json();
        }
        function renderStatus(status) {
          const update = status.update;
          $("update-state").replaceWith(Object.assign(badge(update.state), { id: "update-state" }));
          $("progress-text").textContent = update.state === "idle"
            ? "no update running" : update.updated + " of " + update.total + " servers updated";
          $("target").textContent = update.target_version ? "target " + update.target_version : "";
          const bar = $("bar");
          bar.className = "bar state-" + update.state;
          bar.firstElementChild.style.width = (update.total ? 100 * update.updated / update.total : 0) + "%";
          const reconnects = Object.entries(update.reconnects || {})
            .map(([node, r]) => node + ": " + r.phase + (r.attempts ? " (" + r.attempts + " calls)" : ""));
          $("summary").textContent = update.summary + (reconnects.length ? " — " + reconnects.join(", ") : "");
          $("flags").replaceChildren(...(update.flags || []).map((flag) => el("span", "flagged: " + flag, "badge flag")));
          const last = update.last_run;
          $("last-run").textContent = last ? "last run: " + last.outcome + " at " + new Date(last.at).toLocaleString()
            + (last.by ? " by " + last.by : "") + " — " + last.reason : "";
          renderDrive(update.drive);
          const nodes = $("nodes");
          nodes.replaceChildren(...status.nodes.map((node) => {
            const card = el("div", null, "node" + (node.health === "down" ? " down" : ""));
            const title = el("h3", node.id);
            title.append(badge(node.mode));
            card.append(title);
            const list = el("dl");
            const rows = [["health", badge(node.health)], ["admin", badge(node.admin)],
              ["version", node.version || "—"], ["connections", node.connections]];
            for (const [name, value] of rows) {
              list.append(el("dt", name));
              const dd = el("dd");
              dd.append(typeof value === "object" ? value : String(value));
              list.append(dd);
            }
            card.append(list);
            if (node.mode_override) card.append(el("div", "mode overridden by an operator: " + node.mode_override, "note"));
            if (node.reconnect_drain) card.append(el("div", "drained by the balancer for its reconnect", "note"));
            return card;
          }));
          const reload = status.config.last_reload;
          $("config").textContent = "config generation " + status.config.generation
            + (reload.ok ? "" : " — last reload rejected: " + reload.error)
            + (status.state && !status.state.ok
              ? " — state database failing since " + new Date(status.state.since).toLocaleTimeString()
                + ": " + status.state.error + " (" + status.state.unwritten_events + " journal events waiting)"
              : "");
        }
        function duration(seconds) {
          return seconds < 120 ? seconds.toFixed(1) + "s" : Math.floor(seconds / 60) + "m " + Math.floor(seconds % 60) + "s";
        }
        function driveRow(position, name, what, seconds, stalled) {
          const row = el("div", null, "drive-step" + (stalled ? " stalled" : ""));
          const time = seconds === null || seconds === undefined ? ""
            : " (" + duration(seconds) + (position === "done" ? ")" : " so far)");
          row.append(badge(position), " " + name + ": " + what + time + (stalled ? " — STALLED: " + stalled : ""));
          return row;
        }
        function renderDrive(drive) {
          if (!drive) { $("drive").replaceChildren(); return; }
          const left = drive.estimated_remaining_seconds;
          const head = el("div", "driven update " + drive.state + " to " + drive.target_version
            + ", started by " + drive.started_by + (drive.forced ? " (forced)" : "")
            + (left === null || left === undefined ? "" : " — about " + duration(left) + " left")
            + (drive.reason && drive.state !== "running" ? " — " + drive.reason : ""), "drive-head");
          const rows = drive.steps.map((step) => {
            const what = step.phase === "pending"
              ? (step.role === "last" ? "last, renews the productive schema" : "update mode")
              : step.phase === "canary"
                ? "canary, " + step.canary_served + " of " + drive.canary_connections + " device connections"
                : step.phase;
            return driveRow(step.position, step.node, what, step.seconds, step.stalled);
          });
          rows.push(driveRow(drive.reconnect.position, "reconnect", "update-mode servers back to the productive database",
            drive.reconnect.seconds, null));
          $("drive").replaceChildren(head, ...rows);
        }
        function renderEvents(document) {
          const body = $("events");
          const events = document.events.slice().reverse();
          if (!events.length) {
            const row = el("tr");
            const cell = el("td", document.note || "no events yet", "empty");
            cell.colSpan = 5;
            row.append(cell);
            body.replaceChildren(row);
            return;
          }
          body.replaceChildren(...events.map((event) => {
            const row = el("tr");
            row.append(el("td", new Date(event.at).toLocaleTimeString(), "time"), el("td", event.kind),
              el("td", event.node || ""), el("td", event.actor), el("td", event.message));
            return row;
          }));
        }
        function setLive(ok, text) {
          $("live").className = "dot " + (ok ? "ok" : "bad");
          $("live-text").textContent = text;
        }
        async function refresh() {
          try {
            const [status, events] = await Promise.all([api("/status"), api("/events?limit=15")]);
            renderStatus(status);
            renderEvents(events);
            $("login").style.display = "none";
            $("error").textContent = "";
            setLive(true, "live, " + new Date().toLocaleTimeString());
          } catch (error) {
            if (error instanceof Unauthorized) {
              $("login").style.display = "block";
              setLive(false, "token needed");
              $("error").textContent = sessionStorage.getItem(KEY) ? "the admin token was refused" : "";
              return;
            }
            setLive(false, "no answer");
            $("error").textContent = String(error.message || error);
          }
          setTimeout(refresh, 1500);
        }
        $("login-form").addEventListener("submit", (event) => {
          event.preventDefault();
          sessionStorage.setItem(KEY, $("token-input").value.trim());
          $("token-input").value = "";
          refresh();
        });
        refresh();
        </script>
        </body>
        </html>
        """
}
