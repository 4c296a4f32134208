// Where the reliability suite is, live on stderr (node:test passes a test file's stderr through as
// it comes): each scenario as it starts, numbered within its file, with the time since the file
// started, and the steps of a long scenario (the broker restarts). The spec reporter's line for a
// scenario comes only when it ends.
import { basename } from "node:path";
import { beforeEach } from "node:test";

const started = performance.now();
let file = "reliability";
let scenarios = 0;

/** One line: `[reliability] <file>: <what> (<seconds> s)`. */
export function progress(what: string): void {
  process.stderr.write(`[reliability] ${file}: ${what} (${((performance.now() - started) / 1000).toFixed(0)} s)\n`);
}

/** Call once at the top of a test file: every scenario (test) of the file is announced as it starts. */
export function announceScenarios(path: string, count?: number): void {
  file = basename(path).replace(/\.test\.ts$/, "");
  beforeEach((context) => progress(`scenario ${++scenarios}${count ? "/" + count : ""}: ${context.name}`));
}
