package agent

// roleEnv selects the role of a child process of the cross-process tests.
const roleEnv = "SHMREG_AGENT_TEST_ROLE"

func runChild(role string) int { return 2 }
