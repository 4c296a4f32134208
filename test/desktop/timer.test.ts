// The desktop "timer" and "time" modules follow Moddable's documented semantics.
import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";
import Timer, { countLiveTimers, TimerInstance } from "../../hosts/desktop/timer.ts";
import Time from "../../hosts/desktop/time.ts";

const sleep = (milliseconds: number): Promise<void> => new Promise((settle) => setTimeout(settle, milliseconds));

afterEach(() => {
  assert.equal(countLiveTimers(), 0, "every test leaves no live timer behind");
});

describe("Timer", () => {
  test("set: a one-shot fires once, later, with the timer instance and this = globalThis", async () => {
    const calls: Array<{ timer: TimerInstance; self: unknown }> = [];
    const timer = Timer.set(function (this: unknown, fired) {
      calls.push({ timer: fired, self: this });
    }, 10);
    assert.ok(timer instanceof TimerInstance, "the result is an opaque timer instance");
    assert.notEqual(typeof timer, "number");
    assert.equal(calls.length, 0, "not called synchronously");
    await sleep(40);
    assert.equal(calls.length, 1);
    assert.equal(calls[0]!.timer, timer);
    assert.equal(calls[0]!.self, globalThis);
  });

  test("set without an interval is an immediate timer: next turn, not synchronously", async () => {
    let fired = false;
    Timer.set(() => {
      fired = true;
    });
    assert.equal(fired, false);
    await new Promise((settle) => setImmediate(settle));
    await new Promise((settle) => setImmediate(settle));
    assert.equal(fired, true);
  });

  test("a fired one-shot is cleared: schedule throws, clear is harmless", async () => {
    const timer = Timer.set(() => undefined, 1);
    await sleep(20);
    assert.throws(() => Timer.schedule(timer, 10), SyntaxError);
    Timer.clear(timer);
    Timer.clear(undefined);
    Timer.clear(null);
  });

  test("repeat fires every interval until cleared", async () => {
    let count = 0;
    const started = Time.ticks;
    const timer = Timer.repeat(() => {
      count++;
    }, 10);
    await sleep(75);
    Timer.clear(timer);
    const elapsed = Time.ticks - started;
    assert.ok(count >= 3 && count <= Math.floor(elapsed / 10), `fired ${count} times in ${elapsed} ms`);
    const after = count;
    await sleep(30);
    assert.equal(count, after, "no firing after clear");
  });

  test("set with a repeat interval waits the initial interval first", async () => {
    const firings: number[] = [];
    const started = Time.ticks;
    const timer = Timer.set(() => firings.push(Time.ticks - started), 40, 10);
    await sleep(25);
    assert.equal(firings.length, 0, "nothing before the initial interval");
    await sleep(50);
    Timer.clear(timer);
    assert.ok(firings.length >= 2, `fired ${firings.length} times`);
    assert.ok(firings[0]! >= 39, `first firing at ${firings[0]} ms`);
  });

  test("schedule with no interval unschedules; schedule with one reschedules", async () => {
    let count = 0;
    const timer = Timer.repeat(() => {
      count++;
    }, 5);
    Timer.schedule(timer);
    await sleep(30);
    assert.equal(count, 0, "an unscheduled timer never fires");
    Timer.schedule(timer, 5);
    await sleep(30);
    assert.equal(count, 1, "rescheduled as a one-shot: fires once");
    assert.throws(() => Timer.schedule(timer, 5), SyntaxError, "and is then cleared");
  });

  test("a one-shot's callback can keep it alive by giving it a repeat interval", async () => {
    let count = 0;
    const timer = Timer.set((self) => {
      count++;
      if (count === 1) Timer.schedule(self, 5, 5);
      if (count === 3) Timer.clear(self);
    }, 5);
    await sleep(60);
    assert.equal(count, 3);
    Timer.clear(timer);
  });

  test("clear before firing cancels", async () => {
    let fired = false;
    const timer = Timer.set(() => {
      fired = true;
    }, 5);
    Timer.clear(timer);
    await sleep(20);
    assert.equal(fired, false);
  });

  test("delay blocks for the given time", () => {
    const started = performance.now();
    Timer.delay(20);
    assert.ok(performance.now() - started >= 19);
  });
});

describe("Time", () => {
  test("ticks is an integer millisecond counter that never goes back", async () => {
    const first = Time.ticks;
    assert.ok(Number.isInteger(first) && first >= 0);
    await sleep(15);
    const second = Time.ticks;
    assert.ok(second - first >= 14, `${second - first} ms`);
    assert.equal(Time.delta(first, second), second - first);
    assert.ok(Time.delta(first) >= second - first);
  });
});
