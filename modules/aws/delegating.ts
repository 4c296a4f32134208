// What the Python SDK's shadow and jobs clients share (its _AWSIoTMQTTDelegatingClient): a
// connection, their own or an AWSIoTMQTTClient given to share, whose configuration and connection
// calls they pass on under the same names.

import { AWSIoTMQTTClientCore, MQTTv3_1_1 } from "../awsiot";
import type { Payload } from "../packet";
import { invalid, type IoTLinkError, type Platform, shown } from "../types";

export class AWSIoTMQTTDelegatingClient {
  protected readonly connection: AWSIoTMQTTClientCore;
  /** Whether the connection was given (shared with other clients) rather than made here. */
  protected readonly shared: boolean;

  constructor(platform: Platform | undefined, clientID: string, protocolType = MQTTv3_1_1, useWebsocket = false, cleanSession = true, awsIoTMQTTClient?: AWSIoTMQTTClientCore) {
    if (awsIoTMQTTClient !== undefined && awsIoTMQTTClient !== null) {
      if (!(awsIoTMQTTClient instanceof AWSIoTMQTTClientCore)) throw invalid("awsIoTMQTTClient must be an AWSIoTMQTTClient, got " + shown(awsIoTMQTTClient));
      this.connection = awsIoTMQTTClient;
      this.shared = true;
    } else {
      if (platform === undefined || platform === null) throw invalid("a platform is needed to make a connection");
      this.connection = new AWSIoTMQTTClientCore(platform, clientID, protocolType, useWebsocket, cleanSession);
      this.shared = false;
    }
  }

  // ------------------------------------------------------------ configuration, delegated

  configureLastWill(topic: string, payload: Payload, QoS: number, retain = false): void {
    this.connection.configureLastWill(topic, payload, QoS, retain);
  }
  clearLastWill(): void {
    this.connection.clearLastWill();
  }
  configureEndpoint(hostName: string, portNumber: number): void {
    this.connection.configureEndpoint(hostName, portNumber);
  }
  configureIAMCredentials(AWSAccessKeyID: string, AWSSecretAccessKey: string, AWSSessionToken = ""): void {
    this.connection.configureIAMCredentials(AWSAccessKeyID, AWSSecretAccessKey, AWSSessionToken);
  }
  configureCredentials(CAFilePath: string, KeyPath = "", CertificatePath = ""): void {
    this.connection.configureCredentials(CAFilePath, KeyPath, CertificatePath);
  }
  configureUnencryptedConnection(iUnderstandTrafficIsNotEncrypted: boolean): void {
    this.connection.configureUnencryptedConnection(iUnderstandTrafficIsNotEncrypted);
  }
  configureAutoReconnectBackoffTime(baseReconnectQuietTimeSecond: number, maxReconnectQuietTimeSecond: number, stableConnectionTimeSecond: number): void {
    this.connection.configureAutoReconnectBackoffTime(baseReconnectQuietTimeSecond, maxReconnectQuietTimeSecond, stableConnectionTimeSecond);
  }
  configureConnectDisconnectTimeout(timeoutSecond: number): void {
    this.connection.configureConnectDisconnectTimeout(timeoutSecond);
  }
  configureMQTTOperationTimeout(timeoutSecond: number): void {
    this.connection.configureMQTTOperationTimeout(timeoutSecond);
  }
  configureUsernamePassword(username: string, password?: string): void {
    this.connection.configureUsernamePassword(username, password);
  }
  enableMetricsCollection(): void {
    this.connection.enableMetricsCollection();
  }
  disableMetricsCollection(): void {
    this.connection.disableMetricsCollection();
  }

  get onOnline(): (() => void) | undefined {
    return this.connection.onOnline;
  }
  set onOnline(handler: (() => void) | undefined) {
    this.connection.onOnline = handler;
  }
  get onOffline(): (() => void) | undefined {
    return this.connection.onOffline;
  }
  set onOffline(handler: (() => void) | undefined) {
    this.connection.onOffline = handler;
  }
  /** (IoTLink extension) The connection's error handler; a callback of the shadow or jobs layer that throws is reported here too (code callback-error). */
  get onError(): ((error: IoTLinkError) => void) | undefined {
    return this.connection.onError;
  }
  set onError(handler: ((error: IoTLinkError) => void) | undefined) {
    this.connection.onError = handler;
  }

  /** The AWSIoTMQTTClient underneath, for plain MQTT on the same connection (as in Python). */
  getMQTTConnection(): AWSIoTMQTTClientCore {
    return this.connection;
  }

  /** The connection is built (at the first connect()): the subclass attaches its layer. */
  protected connected(): void {}

  connect(keepAliveIntervalSecond = 600): Promise<boolean> {
    const connecting = this.connection.connect(keepAliveIntervalSecond);
    this.connected();
    return connecting;
  }

  connectAsync(keepAliveIntervalSecond = 600, ackCallback?: (mid: number, returnCode: number) => void): number {
    const mid = this.connection.connectAsync(keepAliveIntervalSecond, ackCallback);
    this.connected();
    return mid;
  }

  disconnect(): Promise<boolean> {
    return this.connection.disconnect();
  }

  disconnectAsync(ackCallback?: (mid: number, data: number) => void): number {
    return this.connection.disconnectAsync(ackCallback);
  }
}
