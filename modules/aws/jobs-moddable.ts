// AWSIoTMQTTThingJobsClient on the Moddable host, constructed exactly as in the Python SDK:
// new AWSIoTMQTTThingJobsClient("clientId", "thingName"), or on a shared connection with its last
// argument. Its own module (manifest_awsiot_jobs.json) so that firmware using only JobsClient leaves it out.
import { type AWSIoTMQTTClientCore, MQTTv3_1_1 } from "../awsiot";
import { moddablePlatform } from "../../hosts/moddable/platform";
import { AWSIoTMQTTThingJobsClientCore } from "./jobs-facade";

export class AWSIoTMQTTThingJobsClient extends AWSIoTMQTTThingJobsClientCore {
  constructor(clientID: string, thingName: string, QoS = 0, protocolType = MQTTv3_1_1, useWebsocket = false, cleanSession = true, awsIoTMQTTClient?: AWSIoTMQTTClientCore) {
    super(moddablePlatform, clientID, thingName, QoS, protocolType, useWebsocket, cleanSession, awsIoTMQTTClient);
  }
}
