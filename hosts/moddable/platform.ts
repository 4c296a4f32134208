// The Moddable host in one place: the Platform the core needs (Timer clock, socket transport).
import type { Clock, EndpointSettings, Platform, Transport } from "../../modules/types";
import { TimerClock } from "./clock";
import { SocketTransport } from "./transport";

export const moddablePlatform: Platform = Object.freeze({
  createClock(): Clock {
    return new TimerClock();
  },
  createTransport(endpoint: EndpointSettings, largestPacketBytes?: number): Transport {
    return new SocketTransport(endpoint, largestPacketBytes);
  },
});
