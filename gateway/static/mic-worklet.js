// Microphone capture: downsample the context's audio to 16 kHz PCM16 and post 20 ms frames.
//
// Each output sample is the mean of the input samples that fall into its interval (a box
// filter), which removes most of what would alias when going from 44.1/48 kHz to 16 kHz.
class MicProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate = 16000, frameMs = 20 } = options.processorOptions || {};
    this.step = sampleRate / targetRate; // input samples per output sample
    this.frameSamples = Math.round(targetRate * frameMs / 1000);
    this.frame = new Int16Array(this.frameSamples);
    this.filled = 0;
    this.pos = 0;
    this.sum = 0;
    this.count = 0;
    this.energy = 0;
  }

  emit(value) {
    const clipped = Math.max(-1, Math.min(1, value));
    this.frame[this.filled++] = clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff;
    this.energy += clipped * clipped;
    if (this.filled === this.frameSamples) {
      const level = Math.sqrt(this.energy / this.frameSamples);
      this.port.postMessage({ pcm: this.frame.buffer, level }, [this.frame.buffer]);
      this.frame = new Int16Array(this.frameSamples);
      this.filled = 0;
      this.energy = 0;
    }
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true; // no input connected yet
    for (let i = 0; i < channel.length; i++) {
      this.sum += channel[i];
      this.count++;
      this.pos += 1;
      if (this.pos >= this.step) {
        // Below 16 kHz (step < 1) a sample is repeated; real devices run at 44.1/48 kHz.
        const value = this.sum / this.count;
        do {
          this.emit(value);
          this.pos -= this.step;
        } while (this.pos >= this.step);
        this.sum = 0;
        this.count = 0;
      }
    }
    return true;
  }
}

registerProcessor("mic-processor", MicProcessor);
