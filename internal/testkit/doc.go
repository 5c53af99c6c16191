// Package testkit is test support for the unit tests of the engine (backend) and its API (paths): a FAKE rotator kind,
// its fake targets, and a settable clock. Only _test.go files import it; the plugin binary must not (a test checks).
//
// The fault kind ("fault-test") is a FAKE for the faults real targets cannot produce on demand: Apply failing before
// or after it changed the value, an answer lost on the way back, Verify rejecting a value or answering like an
// unreachable host, Generate failing, calls held at a gate. Its target is an in-memory value; a test creates one with
// NewFaultTarget and names it in the role's "target" field. The kind is registered once, when the package is
// initialized, because rotators.Register panics on a duplicate name.
//
// The fake deliberately quotes secret values in its error messages, as a careless driver would, so that tests prove the
// engine redacts them. It implements the optional interfaces rotators.Claimer, rotators.Grantor and rotators.Locator
// (kind) and rotators.Finisher and rotators.Settler (target), so the engine's paths for them are tested too.
package testkit
