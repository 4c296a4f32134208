// Moddable preloads IoTLink's modules into flash, where a module's objects must be frozen (the
// linker warns "not frozen" otherwise, and a write would fail on the device). Every object a
// portable module exports is checked here, on Node and inside XS.
import * as backoff from "../../modules/backoff";
import * as client from "../../modules/client";
import * as events from "../../modules/events";
import * as logline from "../../modules/logline";
import * as options from "../../modules/options";
import * as outbox from "../../modules/outbox";
import * as packet from "../../modules/packet";
import * as ring from "../../modules/ring";
import * as session from "../../modules/session";
import * as subscriptions from "../../modules/subscriptions";
import * as topic from "../../modules/topic";
import * as types from "../../modules/types";
import * as awsiot from "../../modules/awsiot";
import * as sigv4 from "../../modules/sigv4";
import { equal, ok, test } from "../harness";

const MODULES: Record<string, object> = { backoff, client, events, logline, options, outbox, packet, ring, session, subscriptions, topic, types, awsiot, sigv4 };

test("preload: every object a core module exports is frozen (tables such as STATE_NAMES and EVENT_NAMES)", () => {
  const unfrozen: string[] = [];
  let objects = 0;
  for (const [name, exports] of Object.entries(MODULES)) {
    for (const key of Object.keys(exports)) {
      const value = (exports as Record<string, unknown>)[key];
      // PascalCase objects are const enums: tsc erases them for the device (only these bundles keep them).
      if (typeof value !== "object" || value === null || /^[A-Z][A-Za-z0-9]*[a-z][A-Za-z0-9]*$/.test(key)) continue;
      objects++;
      if (!Object.isFrozen(value)) unfrozen.push(name + "." + key);
    }
  }
  ok(objects >= 5, "the exported tables were found (" + objects + ")");
  equal(unfrozen.join(", "), "");
});
