// The device app's identity at boot, for fleet provisioning by claim (docs/provisioning.md): the
// identity kept in flash when there is one; otherwise the app connects with the claim certificate,
// provisions itself (CreateKeysAndCertificate, RegisterThing), keeps the new identity before anything
// else, disconnects, and goes on with it. Preloaded, like app/remote-settings.ts; its state is in the
// objects it makes, and the claim connection's client is dropped once done (its buffers with it).
import { type Identity, type IdentityStore } from "../modules/aws/identity";
import { FleetProvisioningClient, PROVISIONING_MIN_PACKET_BYTES, ProvisioningStatus } from "../modules/aws/provisioning";
import { MqttClient } from "../modules/client";
import { type EndpointSettings, type Platform, State } from "../modules/types";

export interface IdentityBootOptions {
  readonly store: IdentityStore;
  /** The provisioning template's name. */
  readonly template: string;
  /** The template's parameters (SerialNumber...). */
  readonly parameters: Record<string, string>;
  /** The endpoint with the claim certificate and key. */
  readonly claimEndpoint: EndpointSettings;
  /** The claim connection's client id. */
  readonly claimClientId: string;
  readonly platform: Platform;
  /** A provisioning step's deadline (ms). */
  readonly timeoutMs: number;
  /** After a failed provisioning, how long before the next try (ms). */
  readonly retryMs: number;
  /** Runs `work` after `delayMs` on a turn of its own (Timer.set on the device). */
  readonly later: (work: () => void, delayMs: number) => void;
  readonly log: (event: string, fields: readonly (string | number | boolean)[]) => void;
}

/** Calls `ready` with the device's identity: the stored one now, or a new one once provisioned. */
export function bootIdentity(options: IdentityBootOptions, ready: (identity: Identity) => void): void {
  const stored = options.store.load();
  if (stored !== undefined) {
    options.log("identity", ["thing", stored.thingName, "from", "storage"]);
    ready(stored);
    return;
  }
  provisionOnce(options, ready);
}

function provisionOnce(options: IdentityBootOptions, ready: (identity: Identity) => void): void {
  const { log, later } = options;
  const clock = options.platform.createClock();
  // The claim connection: CreateKeysAndCertificate's reply (about 3.7 KB) must fit a packet. Its
  // requests are small, and it asks nothing while offline but the two provisioning requests.
  const claim = new MqttClient({
    clientId: options.claimClientId,
    // Not resumed by the device's own connection afterwards, which would then present the claim certificate.
    transport: options.platform.createTransport({ ...options.claimEndpoint, resumeTlsSessions: false }, PROVISIONING_MIN_PACKET_BYTES),
    clock,
    maxPacketBytes: PROVISIONING_MIN_PACKET_BYTES,
    inflightBytes: PROVISIONING_MIN_PACKET_BYTES,
    queueEntries: 4,
    queueBytes: 2048,
    maxSubscriptions: 4,
  });
  const provisioning = new FleetProvisioningClient(claim, { timeoutMs: options.timeoutMs });
  let outcome: Identity | undefined;
  let asked = false;
  let finished = false;
  const finish = (): void => {
    if (finished) return;
    finished = true;
    // Disconnect first: the claim session is clean, so its subscriptions go with it, and UNSUBSCRIBEs
    // sent just before the DISCONNECT had Mosquitto write UNSUBACKs to a closed socket ("Protocol error").
    claim.disconnect();
    provisioning.close();
  };
  claim.on("error", (error) => log("error", ["code", error.code, "message", error.message]));
  claim.on("restored", () => {
    if (asked) return;
    asked = true;
    log("provision", ["step", "claim connected", "template", options.template]);
    // On a turn of its own: not on top of the CONNACK's read (the stack budget).
    later(() => {
      provisioning.provision(options.template, options.parameters, (status, device, failure) => {
        if (status !== ProvisioningStatus.Accepted || device === undefined) {
          log("provision", ["step", "failed", "message", failure !== undefined ? failure.message : "no reply"]);
          finish();
          return;
        }
        try {
          // Before anything else: the key was issued once, and a device that reboots now must come back with it.
          options.store.save(device.identity);
        } catch (error) {
          log("provision", ["step", "failed", "message", "the new identity could not be kept: " + (error instanceof Error ? error.message : String(error))]);
          finish();
          return;
        }
        outcome = device.identity;
        log("provision", ["step", "done", "thing", device.identity.thingName, "certificate", device.certificateId.slice(0, 12)]);
        // Closing writes UNSUBSCRIBEs and a DISCONNECT: on a turn of its own, not on top of this callback (the stack).
        later(finish, 0);
      });
    }, 0);
  });
  claim.on("state", (state) => {
    if (state !== State.Idle || !finished) return;
    // The claim connection is closed: go on with the new identity, or try again later.
    later(() => {
      if (outcome !== undefined) ready(outcome);
      else {
        log("provision", ["step", "retry", "in", options.retryMs]);
        later(() => provisionOnce(options, ready), options.retryMs);
      }
    }, 0);
  });
  claim.connect();
}
