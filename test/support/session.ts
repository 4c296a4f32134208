// A client wired to a scripted broker on a virtual clock, with every event recorded: the fixture
// of the client scenarios.
import { type ClientOptions, type InboundMessage, MqttClient } from "../../modules/client";
import type { IoTLinkError } from "../../modules/types";
import { fromUtf8 } from "./broker-codec";
import { ScriptedBroker } from "./scripted-broker";
import { VirtualClock } from "./virtual-clock";

export interface RecordedEvent {
  at: number;
  name: string;
  detail: string;
}

export interface Session {
  clock: VirtualClock;
  broker: ScriptedBroker;
  client: MqttClient;
  events: RecordedEvent[];
  errors: IoTLinkError[];
  messages: { topic: string; payload: string; qos: number; retain: boolean }[];
  /** Names of the recorded events, in order, optionally only those named. */
  names(...only: string[]): string[];
  count(name: string): number;
  /** Payloads of PUBLISH packets the broker received, as text. */
  published(): string[];
  /** Removes the fixture's own "message" listener. */
  stopRecordingMessages(): void;
}

export function session(options: Partial<ClientOptions> = {}, start = 0): Session {
  const clock = new VirtualClock(start);
  const broker = new ScriptedBroker(clock);
  const client = new MqttClient({ clientId: "device-1", transport: broker, clock, ...options });
  const events: RecordedEvent[] = [];
  const errors: IoTLinkError[] = [];
  const messages: Session["messages"] = [];
  const record = (name: string, detail = ""): void => {
    events.push({ at: clock.time, name, detail });
  };
  client.on("online", (present) => record("online", String(present)));
  client.on("offline", (reason) => record("offline", reason));
  client.on("restored", () => record("restored"));
  client.on("drop", (kind, topic) => record("drop", kind + " " + topic));
  client.on("reconnecting", (delay, attempt) => record("reconnecting", delay + "/" + attempt));
  client.on("error", (error) => {
    errors.push(error);
    record("error", error.code + ": " + error.message);
  });
  const onMessage = (message: InboundMessage): void => {
    messages.push({ topic: message.topic, payload: fromUtf8(message.payload), qos: message.qos, retain: message.retain });
    record("message", message.topic);
  };
  client.on("message", onMessage);
  return {
    clock,
    broker,
    client,
    events,
    errors,
    messages,
    names: (...only) => events.filter((event) => only.length === 0 || only.includes(event.name)).map((event) => event.name),
    count: (name) => events.filter((event) => event.name === name).length,
    published: () => broker.sent(3).map((packet) => fromUtf8(packet.payload as Uint8Array)),
    stopRecordingMessages: () => {
      client.off("message", onMessage);
    },
  };
}

/** Connects and runs until restored. */
export function connected(options: Partial<ClientOptions> = {}): Session {
  const s = session(options);
  s.client.connect();
  s.clock.settle();
  if (s.client.stateName !== "online") throw new Error("fixture did not come online: " + s.client.stateName);
  return s;
}
