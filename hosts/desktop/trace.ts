// The desktop stand-in for XS's `trace` global: text goes to stdout unchanged (no newline added),
// as it reaches the serial console on a device. Tests and runners can redirect it with setTraceSink.

export type TraceSink = (text: string) => void;

type TraceValue = string | number | boolean;

export interface DesktopTrace {
  (...values: TraceValue[]): void;
  left(log: string | ArrayBufferLike, conversation?: string): void;
  center(log: string | ArrayBufferLike, conversation?: string): void;
  right(log: string | ArrayBufferLike, conversation?: string): void;
}

const writeToStdout: TraceSink = (text) => {
  process.stdout.write(text);
};

let sink: TraceSink = writeToStdout;

/** Sends trace output somewhere else; with no argument, back to stdout. Returns the previous sink. */
export function setTraceSink(next: TraceSink = writeToStdout): TraceSink {
  const previous = sink;
  sink = next;
  return previous;
}

function textOf(log: string | ArrayBufferLike): string {
  if (typeof log === "string") return log;
  // xsbug shows binary conversation data as bytes; hex keeps a console line readable.
  return Buffer.from(new Uint8Array(log)).toString("hex") + "\n";
}

function traceValues(...values: TraceValue[]): void {
  // XS concatenates the string forms of all arguments.
  sink(values.map((value) => String(value)).join(""));
}

// On the device these pick an xsbug conversation pane; a serial console just prints them.
export const trace: DesktopTrace = Object.assign(traceValues, {
  left: (log: string | ArrayBufferLike) => sink(textOf(log)),
  center: (log: string | ArrayBufferLike) => sink(textOf(log)),
  right: (log: string | ArrayBufferLike) => sink(textOf(log)),
});

/** Installs `trace` as a global, as XS provides it to every module. */
export function installTrace(): void {
  (globalThis as { trace?: DesktopTrace }).trace = trace;
}
