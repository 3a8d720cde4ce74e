// The VoxMesh page: one WebSocket session (protocol v1, docs/protocol.md), microphone capture
// and reply playback through AudioWorklets, and a live transcript.
//
// Like any client, the page buys a short-lived session token (POST /v1/sessions) before it
// connects; its credential is the page key the gateway put into data-session-key (only when
// VOXMESH_GATEWAY_PAGE_KEY_ENABLED is on, and only on loopback hosts or listed origins).

const INPUT_RATE = 16000; // microphone audio sent to the server
const OUTPUT_RATE = 24000; // reply audio asked of the server
const REPORT_MS = 250; // playback progress reports
const FRAME_MS = 20;
// Closes after which the page reconnects and resumes its session (network loss, a gateway
// restart or drain, a server error, too slow a connection); the rest need the user.
const RECONNECT_CODES = new Set([1001, 1005, 1006, 1011, 1012, 1013, 4413]);
const RECONNECT_BASE_MS = 500; // doubled per failed attempt, with jitter, up to the cap
const RECONNECT_MAX_MS = 10000;
const RECONNECT_ATTEMPTS = 8;
const REAUTH_EARLY_S = 30; // a new token is handed to the session this long before expiry

// Why the gateway refused or ended a connection (close codes in docs/protocol.md).
const CLOSE_REASONS = {
  1009: "a message was too large",
  1011: "server error or lost connection",
  1012: "the server is restarting",
  4401: "not authorized",
  4403: "this page's origin is not allowed",
  4404: "the session no longer exists",
  4408: "the session was not started in time",
  4409: "the session belongs to someone else",
  4413: "the connection was too slow",
  4429: "too many connections",
};

const app = document.getElementById("app");
const ui = {
  state: document.getElementById("state"),
  agentNow: document.getElementById("agent-now"),
  agent: document.getElementById("agent"),
  start: document.getElementById("start"),
  interrupt: document.getElementById("interrupt"),
  level: document.getElementById("level"),
  notice: document.getElementById("notice"),
  transcript: document.getElementById("transcript"),
  empty: document.getElementById("empty"),
  composer: document.getElementById("composer"),
  text: document.getElementById("text"),
  send: document.getElementById("send"),
};

// -- small view helpers -----------------------------------------------------------------------

let noticeTimer = 0;

function notify(message, { info = false, sticky = false } = {}) {
  ui.notice.textContent = message;
  ui.notice.classList.toggle("info", info);
  ui.notice.hidden = false;
  clearTimeout(noticeTimer);
  if (!sticky) noticeTimer = setTimeout(() => { ui.notice.hidden = true; }, 6000);
}

function setBadge(state) {
  ui.state.dataset.state = state;
  ui.state.textContent = state;
  ui.interrupt.classList.toggle("hot", state === "speaking");
}

function setAgent(name) {
  ui.agentNow.hidden = !name;
  ui.agentNow.textContent = name || "";
}

function setLive(live) {
  app.classList.toggle("live", live);
  ui.start.classList.toggle("live", live);
  ui.start.querySelector(".text").textContent = live ? "Stop" : "Start";
  ui.agent.disabled = live;
  ui.interrupt.disabled = !live;
  ui.text.disabled = !live;
  ui.send.disabled = !live;
  if (!live) ui.level.style.width = "0";
}

/** The transcript: one block per turn holding the user's and the assistant's bubbles. */
class Transcript {
  constructor(root, empty) {
    this.root = root;
    this.empty = empty;
    this.turns = new Map();
  }

  turn(turnId) {
    const key = turnId || "_";
    let turn = this.turns.get(key);
    if (!turn) {
      this.empty.hidden = true;
      const el = document.createElement("div");
      el.className = "turn";
      this.root.append(el);
      turn = { el, user: null, assistant: null, latency: null };
      this.turns.set(key, turn);
    }
    return turn;
  }

  bubble(turn, role) {
    if (!turn[role]) {
      const el = document.createElement("div");
      el.className = `bubble ${role}`;
      // The user's words go above the reply, and the latency line stays last.
      if (role === "user") turn.el.prepend(el);
      else if (turn.latency) turn.latency.before(el);
      else turn.el.append(el);
      turn[role] = el;
    }
    return turn[role];
  }

  follow(update) {
    const atBottom = this.root.scrollHeight - this.root.scrollTop - this.root.clientHeight < 60;
    update();
    if (atBottom) this.root.scrollTop = this.root.scrollHeight;
  }

  user(turnId, text, final) {
    this.follow(() => {
      const el = this.bubble(this.turn(turnId), "user");
      el.textContent = text;
      el.classList.toggle("partial", !final);
    });
  }

  delta(turnId, delta) {
    this.follow(() => {
      const turn = this.turn(turnId);
      const el = this.bubble(turn, "assistant");
      el.classList.add("streaming");
      if (!turn.prefilled) el.append(delta); // a notification shows its whole text at once
    });
  }

  /** A proactive notification: its reply (turn_id = notification_id) fills this bubble. */
  notification(event) {
    this.follow(() => {
      const turn = this.turn(event.notification_id);
      const el = this.bubble(turn, "assistant");
      el.classList.add("notification", event.priority === "high" ? "high" : "normal");
      el.dataset.label = event.source ? `Notification · ${event.source}` : "Notification";
      el.textContent = event.text;
      turn.prefilled = true;
    });
  }

  /** A line about the conversation itself, e.g. a handoff to another agent. */
  system(text) {
    this.follow(() => {
      this.empty.hidden = true;
      const el = document.createElement("div");
      el.className = "system";
      el.textContent = text;
      this.root.append(el);
    });
  }

  assistantFinal(turnId, text) {
    this.follow(() => {
      const el = this.bubble(this.turn(turnId), "assistant");
      const tag = el.querySelector(".tag");
      el.textContent = text;
      if (tag) el.append(tag);
    });
  }

  done(turnId, status) {
    const turn = this.turns.get(turnId || "_");
    const el = turn && turn.assistant;
    if (!el) return;
    el.classList.remove("streaming");
    if (status !== "completed" && !el.querySelector(".tag")) {
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = status;
      el.append(tag);
    }
  }

  latency(event) {
    this.follow(() => {
      const turn = this.turn(event.turn_id);
      if (!turn.latency) {
        turn.latency = document.createElement("div");
        turn.latency.className = "latency";
        turn.el.append(turn.latency);
      }
      const part = (name, ms) => `${name} <b>${Math.round(ms)}</b> ms`;
      turn.latency.innerHTML = [
        part("STT", event.stt_ms), part("LLM", event.llm_ms), part("TTS", event.tts_ms),
        part("total", event.total_ms),
      ].join(" · ");
    });
  }
}

const transcript = new Transcript(ui.transcript, ui.empty);

// -- the session ------------------------------------------------------------------------------

/** One conversation: the socket, the audio graph and the playback bookkeeping. */
class Session {
  constructor(agent) {
    this.agent = agent;
    this.ws = null;
    this.ctx = null;
    this.stream = null;
    this.mic = null;
    this.player = null;
    this.started = false;
    this.closing = false;
    this.audioTurn = null; // turn of the reply audio now arriving
    this.stopped = new Set(); // turns whose playback was stopped: drop their late audio
    this.flushWaiters = [];
    this.lastError = "";
    this.playedByTurn = new Map(); // turnId -> ms played, for the page-visible counter
    this.sessionId = null; // sent in session.start when reconnecting, to resume
    this.resumeToken = null; // the session's own secret: only its holder may resume it
    this.reauthTimer = null;
    this.attempts = 0; // reconnect attempts since the last session.started
    this.retryTimer = 0;
  }

  async open() {
    // The AudioContext must be created inside the click that started the session.
    this.ctx = new AudioContext({ latencyHint: "interactive" });
    await this.ctx.resume();
    await Promise.all([
      this.ctx.audioWorklet.addModule(app.dataset.micWorklet),
      this.ctx.audioWorklet.addModule(app.dataset.playerWorklet),
    ]);
    this.player = new AudioWorkletNode(this.ctx, "player-processor", {
      numberOfInputs: 0,
      outputChannelCount: [1],
      processorOptions: { inputRate: OUTPUT_RATE, reportMs: REPORT_MS },
    });
    this.player.port.onmessage = (event) => this.onPlayer(event.data);
    this.player.connect(this.ctx.destination);
    await this.openMic();
    await this.connect();
  }

  /** A session token, bought the way every client buys one (docs/protocol.md, Tokens). */
  async token() {
    const key = app.dataset.sessionKey;
    if (!key) {
      throw new Error("this gateway gives its page no session key " +
        "(VOXMESH_GATEWAY_PAGE_KEY_ENABLED is off, or the host is not allowed)");
    }
    const reply = await fetch(app.dataset.sessionsPath, {
      method: "POST",
      headers: { Authorization: `Bearer ${key}` },
      cache: "no-store",
    });
    const body = await reply.json().catch(() => ({}));
    if (!reply.ok) {
      const why = body.error ? body.error.message : `HTTP ${reply.status}`;
      throw new Error(`no session token (${why})`);
    }
    return body.token;
  }

  async openMic() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      notify("The microphone needs HTTPS or localhost; you can still type.", { info: true });
      return;
    }
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: {
          echoCancellation: true,
          noiseSuppression: true,
          autoGainControl: true,
          channelCount: 1,
        },
      });
    } catch (err) {
      notify(`Microphone unavailable (${err.name}); you can still type.`, { info: true });
      return;
    }
    const source = this.ctx.createMediaStreamSource(this.stream);
    this.mic = new AudioWorkletNode(this.ctx, "mic-processor", {
      numberOfOutputs: 0,
      processorOptions: { targetRate: INPUT_RATE, frameMs: FRAME_MS },
    });
    this.mic.port.onmessage = (event) => this.onMicFrame(event.data);
    source.connect(this.mic);
  }

  async connect() {
    const token = await this.token();
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = `?token=${encodeURIComponent(token)}`;
    this.ws = new WebSocket(`${scheme}://${location.host}${app.dataset.realtimePath}${query}`);
    this.ws.binaryType = "arraybuffer";
    this.ws.onopen = () => this.sendJson({
      type: "session.start",
      agent: this.agent,
      sample_rate: INPUT_RATE,
      output_sample_rate: OUTPUT_RATE,
      session_id: this.sessionId,
      resume_token: this.resumeToken,
      variables: {},
    });
    this.ws.onmessage = (event) => {
      if (typeof event.data === "string") this.onEvent(JSON.parse(event.data));
      else this.onAudio(event.data);
    };
    const ws = this.ws;
    this.ws.onclose = (event) => {
      if (ws !== this.ws) return; // an older socket
      if (!this.closing && this.sessionId && RECONNECT_CODES.has(event.code)) {
        this.reconnect();
        return;
      }
      if (!this.closing && event.code !== 1000) {
        const known = CLOSE_REASONS[event.code];
        const detail = event.reason || `code ${event.code}`;
        const why = this.lastError || (known ? `${known}: ${detail}` : detail);
        notify(`Session closed (${why}).`, { sticky: true });
      }
      this.teardown();
    };
  }

  /** Buy a new token and reconnect after an exponential, jittered backoff; resumes the session. */
  reconnect() {
    this.started = false;
    if (this.attempts >= RECONNECT_ATTEMPTS) {
      notify("Connection lost; could not reconnect.", { sticky: true });
      this.teardown();
      return;
    }
    const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** this.attempts);
    this.attempts += 1;
    setBadge("reconnecting");
    app.dataset.reconnects = String(Number(app.dataset.reconnects || 0) + 1);
    notify("Connection lost; reconnecting…", { info: true, sticky: true });
    if (this.player) this.player.port.postMessage({ type: "flush" }); // the reply is gone
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(async () => {
      if (this.closing) return;
      try {
        await this.connect();
      } catch {
        this.reconnect(); // no token (the gateway is still down): try again later
      }
    }, delay * (0.75 + Math.random() * 0.5));
  }

  /** Before the token expires, buy a new one and hand it to the live session. */
  scheduleReauth(expiresAt) {
    clearTimeout(this.reauthTimer);
    if (!expiresAt) return;
    const inMs = Math.max(1000, (expiresAt - REAUTH_EARLY_S) * 1000 - Date.now());
    this.reauthTimer = setTimeout(async () => {
      try {
        this.sendJson({ type: "session.reauth", token: await this.token() });
      } catch {
        this.scheduleReauth(expiresAt + REAUTH_EARLY_S / 2); // try again a little later
      }
    }, inMs);
  }

  sendJson(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  onMicFrame({ pcm, level }) {
    ui.level.style.width = `${Math.min(100, Math.round(Math.sqrt(level) * 140))}%`;
    if (this.started && this.ws.readyState === WebSocket.OPEN) this.ws.send(pcm);
  }

  onEvent(event) {
    switch (event.type) {
      case "session.started":
        if (this.attempts) {
          notify(event.resumed ? "Reconnected; the conversation goes on." : "Reconnected.",
            { info: true });
          if (this.sessionId && !event.resumed) transcript.system("A new session started.");
        }
        this.sessionId = event.session_id;
        if (event.resume_token) this.resumeToken = event.resume_token;
        app.dataset.sessionId = event.session_id;
        this.scheduleReauth(event.token_expires_at);
        this.attempts = 0;
        this.started = true;
        setLive(true);
        setAgent(event.agent);
        ui.text.focus();
        break;
      case "state":
        setBadge(event.state);
        if (event.turn_id) this.audioTurn = event.turn_id;
        break;
      case "transcript":
        if (event.role === "user") transcript.user(event.turn_id, event.text, event.final);
        else if (event.final) transcript.assistantFinal(event.turn_id, event.text);
        break;
      case "response.text":
        this.audioTurn = event.turn_id;
        transcript.delta(event.turn_id, event.delta);
        break;
      case "response.done":
        transcript.done(event.turn_id, event.status);
        // The turn's last audio is in; "drained" comes back once it has all played.
        if (!this.stopped.has(event.turn_id)) {
          this.player.port.postMessage({ type: "end", turnId: event.turn_id });
        }
        break;
      case "playback_stop":
        this.stopPlayback(event.turn_id);
        break;
      case "latency":
        transcript.latency(event);
        break;
      case "notification":
        this.audioTurn = event.notification_id;
        transcript.notification(event);
        break;
      case "agent.changed":
        setAgent(event.to_agent);
        transcript.system(`${event.from_agent} handed over to ${event.to_agent}` +
          (event.reason ? ` — ${event.reason}` : ""));
        break;
      case "session.reauthenticated":
        this.scheduleReauth(event.token_expires_at);
        break;
      case "session.draining":
        notify("The server is restarting; reconnecting…", { info: true, sticky: true });
        break;
      case "error":
        this.lastError = `${event.code}: ${event.message}`;
        notify(this.lastError);
        break;
      default:
        break; // speech_started, speech_stopped, pong: nothing to show
    }
  }

  onAudio(buffer) {
    const turnId = this.audioTurn;
    if (!turnId || this.stopped.has(turnId) || !this.player) return;
    this.player.port.postMessage({ type: "audio", turnId, pcm: buffer }, [buffer]);
  }

  /** Page-visible playback bookkeeping (data-played-ms, data-playing on #app). */
  showPlayback(turnId, playedMs, playing) {
    // Played time only grows: a second flush of a stopped turn reports 0, not a rewind.
    if (turnId) this.playedByTurn.set(turnId, Math.max(this.playedByTurn.get(turnId) || 0, playedMs));
    let total = 0;
    for (const ms of this.playedByTurn.values()) total += ms;
    app.dataset.playedMs = String(total);
    app.dataset.playing = String(playing);
  }

  onPlayer(msg) {
    if (msg.type === "progress" || msg.type === "drained") {
      if (this.stopped.has(msg.turnId)) return;
      this.showPlayback(msg.turnId, msg.playedMs, msg.type === "progress");
      this.sendJson({
        type: "playback", turn_id: msg.turnId, played_ms: msg.playedMs,
        done: msg.type === "drained",
      });
    } else if (msg.type === "flushed") {
      this.showPlayback(msg.turnId, msg.playedMs, false);
      for (const resolve of this.flushWaiters.splice(0)) resolve(msg);
    }
  }

  /** Drop buffered reply audio now; resolves with what had played of the current turn. */
  flush() {
    return new Promise((resolve) => {
      this.flushWaiters.push(resolve);
      this.player.port.postMessage({ type: "flush" });
      setTimeout(() => resolve({ turnId: null, playedMs: 0 }), 200);
    });
  }

  stopPlayback(turnId) {
    if (turnId) this.stopped.add(turnId);
    if (this.player) this.player.port.postMessage({ type: "flush" });
  }

  /** Barge-in: stop playing, tell the server how much was heard, then interrupt. */
  async interrupt() {
    if (!this.started) return;
    const turnId = this.audioTurn;
    const { turnId: flushedTurn, playedMs } = await this.flush();
    if (flushedTurn && !this.stopped.has(flushedTurn)) {
      this.sendJson({ type: "playback", turn_id: flushedTurn, played_ms: playedMs, done: false });
    }
    if (turnId) this.stopped.add(turnId);
    this.sendJson({ type: "interrupt" });
  }

  sendText(text) {
    this.sendJson({ type: "input_text", text });
  }

  /** Ask the server to end the session; the socket closes when it has. */
  close() {
    this.closing = true;
    clearTimeout(this.retryTimer);
    this.started = false; // stop sending microphone audio now
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.sendJson({ type: "session.end" });
      setTimeout(() => this.ws.close(1000), 1500);
    } else {
      if (this.ws) this.ws.close();
      this.teardown();
    }
  }

  teardown() {
    clearTimeout(this.reauthTimer);
    if (this.stream) this.stream.getTracks().forEach((track) => track.stop());
    if (this.ctx && this.ctx.state !== "closed") this.ctx.close();
    this.stream = null;
    this.ctx = null;
    this.player = null;
    this.started = false;
    app.dataset.playing = "false";
    if (session === this) {
      session = null;
      setLive(false);
      setBadge("offline");
      setAgent("");
    }
  }
}

// -- wiring -----------------------------------------------------------------------------------

/** Fill the agent picker from the gateway's list; the static option stays if that fails. */
async function loadAgents() {
  try {
    const reply = await fetch(app.dataset.agentsPath, { cache: "no-store" });
    if (!reply.ok) return;
    const { agents, default: chosen } = await reply.json();
    if (!Array.isArray(agents) || !agents.length) return;
    ui.agent.replaceChildren(...agents.map((name) => new Option(name, name, false,
      name === chosen)));
  } catch {
    // Offline or an older gateway: keep the default option.
  }
}

loadAgents();

let session = null;

ui.start.addEventListener("click", async () => {
  if (session) {
    session.close();
    return;
  }
  session = new Session(ui.agent.value);
  const current = session;
  ui.notice.hidden = true;
  setBadge("connecting");
  ui.start.classList.add("live");
  ui.start.querySelector(".text").textContent = "Stop";
  try {
    await current.open();
  } catch (err) {
    notify(`Could not start: ${err.message || err}`, { sticky: true });
    current.closing = true;
    current.teardown();
  }
});

ui.interrupt.addEventListener("click", () => session && session.interrupt());

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.text.value.trim();
  if (!text || !session) return;
  session.sendText(text);
  ui.text.value = "";
});

window.addEventListener("pagehide", () => session && session.close());
