// Every portable suite, in one list: the Node runner (test/node/core.test.ts) and the XS runner
// (test/xs) both import this file, so a suite added here runs on both engines.
import "./topic.suite";
import "./packet.suite";
import "./backoff.suite";
import "./ring.suite";
import "./client-session.suite";
import "./client-queue.suite";
import "./client-delivery.suite";
import "./client-hostile.suite";
import "./client-backpressure.suite";
import "./client-liveness.suite";
import "./client-seams.suite";
import "./awsiot.suite";
import "./api-input.suite";
import "./preload.suite";
import "./shadow.suite";
import "./jobs.suite";
import "./sigv4.suite";
import "./websocket.suite";
import "./journal.suite";
import "./provisioning.suite";
import "./persist.suite";
