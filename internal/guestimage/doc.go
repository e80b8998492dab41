// Package guestimage makes what a microVM boots: it finds the guest kernel
// (Hearth's minimal one, or the distribution's with its virtio modules),
// validates a function's code package, and writes the initramfs that carries
// the agent as /init, the modules the kernel needs and the code at
// /var/task.
package guestimage
