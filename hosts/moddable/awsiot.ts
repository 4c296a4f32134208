// AWSIoTMQTTClient on the Moddable host, constructed exactly as in the Python SDK. Its own module
// (manifest_awsiot.json) so that firmware which does not use the facade does not carry it. The
// platform is the Moddable one with MQTT over WebSocket (hosts/moddable/websocket.ts), for
// useWebsocket=true; manifest_awsiot.json includes manifest_websocket.json for it.
import { AWSIoTMQTTClientCore, MQTTv3_1_1 } from "../../modules/awsiot";
import { moddableWebSocketPlatform } from "./websocket";

export class AWSIoTMQTTClient extends AWSIoTMQTTClientCore {
  constructor(clientID: string, protocolType = MQTTv3_1_1, useWebsocket = false, cleanSession = true) {
    super(moddableWebSocketPlatform, clientID, protocolType, useWebsocket, cleanSession);
  }
}
