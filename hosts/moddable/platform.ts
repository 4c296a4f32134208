// The Moddable host in one place: the Platform the core needs (Timer clock, socket transport),
// and AWSIoTMQTTClient constructed exactly as in the Python SDK.
import { AWSIoTMQTTClientCore, MQTTv3_1_1 } from "../../modules/awsiot";
import type { Clock, EndpointSettings, Platform, Transport } from "../../modules/types";
import { TimerClock } from "./clock";
import { SocketTransport } from "./transport";

export const moddablePlatform: Platform = {
  createClock(): Clock {
    return new TimerClock();
  },
  createTransport(endpoint: EndpointSettings, largestPacketBytes?: number): Transport {
    return new SocketTransport(endpoint, largestPacketBytes);
  },
};

export class AWSIoTMQTTClient extends AWSIoTMQTTClientCore {
  constructor(clientID: string, protocolType = MQTTv3_1_1, useWebsocket = false, cleanSession = true) {
    super(moddablePlatform, clientID, protocolType, useWebsocket, cleanSession);
  }
}
