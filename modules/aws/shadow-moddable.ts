// AWSIoTMQTTShadowClient on the Moddable host, constructed exactly as in the Python SDK:
// new AWSIoTMQTTShadowClient("clientId"), or on a shared connection with its last argument.
// Its own module (manifest_awsiot_shadow.json) so that firmware using only ShadowClient leaves it out.
import { type AWSIoTMQTTClientCore, MQTTv3_1_1 } from "../awsiot";
import { moddablePlatform } from "../../hosts/moddable/platform";
import { AWSIoTMQTTShadowClientCore } from "./shadow-facade";

export class AWSIoTMQTTShadowClient extends AWSIoTMQTTShadowClientCore {
  constructor(clientID: string, protocolType = MQTTv3_1_1, useWebsocket = false, cleanSession = true, awsIoTMQTTClient?: AWSIoTMQTTClientCore) {
    super(moddablePlatform, clientID, protocolType, useWebsocket, cleanSession, awsIoTMQTTClient);
  }
}
