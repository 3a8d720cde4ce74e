// Reply audio playback: a ring buffer of PCM16 at the reply rate, resampled (linearly) to the
// context's rate. Reports how much of each turn has played, so the server knows what was heard.
//
// Messages in:  {type: "audio", turnId, pcm: ArrayBuffer}, {type: "end", turnId}, {type: "flush"}
// Messages out: {type: "progress", turnId, playedMs} every reportMs of played audio,
//               {type: "drained", turnId, playedMs} when an ended turn has played to the end,
//               {type: "flushed", turnId, playedMs} in answer to "flush".
class PlayerProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { inputRate = 24000, reportMs = 250, capacitySeconds = 30 } =
      options.processorOptions || {};
    this.inputRate = inputRate;
    this.step = inputRate / sampleRate; // input samples per output sample
    this.reportSamples = Math.round(inputRate * reportMs / 1000);
    let size = 1;
    while (size < inputRate * capacitySeconds) size *= 2;
    this.ring = new Float32Array(size);
    this.mask = size - 1;
    this.read = 0; // absolute sample counters; the ring index is counter & mask
    this.write = 0;
    this.segments = []; // [{turnId, remaining}] in play order
    this.turns = new Map(); // turnId -> {queued, played, reported, ended}
    this.current = null; // turn of the sample played last
    this.t = 1; // interpolation position between s0 and s1
    this.s0 = 0;
    this.s1 = 0;
    this.port.onmessage = (event) => this.onMessage(event.data);
  }

  get buffered() {
    return this.write - this.read;
  }

  ms(samples) {
    return Math.round(samples * 1000 / this.inputRate);
  }

  turn(id) {
    let state = this.turns.get(id);
    if (!state) {
      state = { queued: 0, played: 0, reported: 0, ended: false };
      this.turns.set(id, state);
    }
    return state;
  }

  onMessage(msg) {
    if (msg.type === "audio") {
      this.push(msg.turnId, new Int16Array(msg.pcm));
    } else if (msg.type === "end") {
      const state = this.turn(msg.turnId);
      state.ended = true;
      this.checkDrained(msg.turnId, state);
    } else if (msg.type === "flush") {
      this.flush();
    }
  }

  push(turnId, pcm) {
    if (this.buffered + pcm.length > this.ring.length) this.grow(this.buffered + pcm.length);
    for (let i = 0; i < pcm.length; i++) {
      this.ring[(this.write + i) & this.mask] = pcm[i] / 32768;
    }
    this.write += pcm.length;
    const last = this.segments[this.segments.length - 1];
    if (last && last.turnId === turnId) last.remaining += pcm.length;
    else this.segments.push({ turnId, remaining: pcm.length });
    this.turn(turnId).queued += pcm.length;
  }

  grow(needed) {
    let size = this.ring.length;
    while (size < needed) size *= 2;
    const next = new Float32Array(size);
    const count = this.buffered;
    for (let i = 0; i < count; i++) next[i] = this.ring[(this.read + i) & this.mask];
    this.ring = next;
    this.mask = size - 1;
    this.read = 0;
    this.write = count;
  }

  flush() {
    const id = this.segments.length ? this.segments[0].turnId : this.current;
    const state = id !== null ? this.turns.get(id) : undefined;
    this.port.postMessage({ type: "flushed", turnId: id, playedMs: state ? this.ms(state.played) : 0 });
    this.read = this.write;
    this.segments = [];
    this.turns.clear();
    this.t = 1;
    this.s0 = 0;
    this.s1 = 0;
  }

  checkDrained(id, state) {
    if (state.ended && state.played >= state.queued) {
      this.port.postMessage({ type: "drained", turnId: id, playedMs: this.ms(state.played) });
      this.turns.delete(id);
    }
  }

  pop() {
    const segment = this.segments[0];
    const value = this.ring[this.read & this.mask];
    this.read++;
    segment.remaining--;
    const state = this.turn(segment.turnId);
    state.played++;
    this.current = segment.turnId;
    if (state.played - state.reported >= this.reportSamples) {
      state.reported = state.played;
      this.port.postMessage({ type: "progress", turnId: segment.turnId, playedMs: this.ms(state.played) });
    }
    if (segment.remaining === 0) {
      this.segments.shift();
      this.checkDrained(segment.turnId, state);
    }
    return value;
  }

  process(_inputs, outputs) {
    const output = outputs[0];
    const out = output[0];
    for (let i = 0; i < out.length; i++) {
      while (this.t >= 1 && this.buffered > 0) {
        this.s0 = this.s1;
        this.s1 = this.pop();
        this.t -= 1;
      }
      if (this.t >= 1) { // buffer ran dry: silence, and start clean when audio comes back
        out[i] = 0;
        this.s0 = 0;
        this.s1 = 0;
        continue;
      }
      out[i] = this.s0 + (this.s1 - this.s0) * this.t;
      this.t += this.step;
    }
    for (let c = 1; c < output.length; c++) output[c].set(out);
    return true;
  }
}

registerProcessor("player-processor", PlayerProcessor);
