// AWSIoTMQTTClient on the Moddable host, constructed exactly as in the Python SDK. Its own module
// (manifest_awsiot.json) so that firmware which does not use the facade does not carry it.
import { AWSIoTMQTTClientCore, MQTTv3_1_1 } from "../../modules/awsiot";
import { moddablePlatform } from "./platform";

export class AWSIoTMQTTClient extends AWSIoTMQTTClientCore {
  constructor(clientID: string, protocolType = MQTTv3_1_1, useWebsocket = false, cleanSession = true) {
    super(moddablePlatform, clientID, protocolType, useWebsocket, cleanSession);
  }
}
