// Runs the portable core suites (test/core) under Node's test runner.
import { test } from "node:test";
import { registeredTests } from "../harness";
import "../core/index";

for (const registered of registeredTests()) test(registered.name, registered.body);
