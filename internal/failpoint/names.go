package failpoint

// The protocol's phase boundaries (docs/decisions.md, "Crash matrix"). A crash test sets
// ROTATION_FAILPOINT=NAME=DURATION and kills Vault while the plugin waits there.
const (
	AfterPrepare      = "after-prepare"       // pending record stored, target untouched
	AfterApply        = "after-apply"         // the target took the new value
	AfterVerify       = "after-verify"        // the new value logged in
	AfterFirstRestart = "after-first-restart" // the first consumer restarted on the new value
	AfterStateWrite   = "after-state-write"   // the new version stored, pending record not yet deleted
	InsideRestore     = "inside-restore"      // the old value put back at the target, not yet recorded
	BeforeRedeploy    = "before-redeploy"     // redeploying recorded, consumers not yet restarted on the old value

	// Inside the ssh kind's Apply.
	SSHAfterAddFirstHost    = "ssh-after-add-host1"    // the new key added on the first host only
	SSHAfterAddAllHosts     = "ssh-after-add-all"      // the new key added on every host, old key still there
	SSHAfterRemoveFirstHost = "ssh-after-remove-host1" // the old key removed on the first host only
)
