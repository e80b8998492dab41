package agent

import (
	"fmt"
	"syscall"
)

// The function runs as Lambda's sandbox user, never as root: code in the
// guest is untrusted, and as root it could rewrite the agent's channel, the
// console and its own code. Lambda runs every function as uid 993, named
// sbx_user1051, in group 990 (what `id` prints inside a Lambda function;
// AWS does not document the numbers, e.g.
// https://simonko.dev/posts/aws/non-root-lambda-image), so code that checks
// its uid sees the same here.
const (
	FunctionUID  = 993
	FunctionGID  = 990
	FunctionUser = "sbx_user1051"
	// FunctionHome is the user's home in /etc/passwd. Lambda's names a
	// folder that does not exist; Hearth's is /tmp, the one writable place,
	// which is also $HOME (see runtimeEnv), so that a lookup by uid and the
	// environment agree.
	FunctionHome = "/tmp"
)

// functionCredential is who the runtime runs as: the sandbox user with its
// group and no supplementary groups (an empty Groups makes os/exec call
// setgroups with none, dropping root's).
func functionCredential() *syscall.Credential {
	return &syscall.Credential{Uid: FunctionUID, Gid: FunctionGID, Groups: []uint32{}}
}

// passwdFile and groupFile are the guest's /etc/passwd and /etc/group: root,
// the function's user and nobody, so that `id`, getpwuid and runtimes that
// look their user up find a name.
func passwdFile() string {
	return "root:x:0:0:root:/root:/sbin/nologin\n" +
		fmt.Sprintf("%s:x:%d:%d::%s:/sbin/nologin\n", FunctionUser, FunctionUID, FunctionGID, FunctionHome) +
		"nobody:x:65534:65534:nobody:/:/sbin/nologin\n"
}

func groupFile() string {
	return "root:x:0:\n" +
		fmt.Sprintf("%s:x:%d:\n", FunctionUser, FunctionGID) +
		"nobody:x:65534:\n"
}
