// Package rootfs turns OCI and Docker container images into read-only root
// disk images (ext4), cached by the image's manifest digest.
//
// An image comes from a registry (Builder.Resolve), a `docker save` tarball
// (Builder.OpenTarball) or an OCI layout folder (Builder.OpenLayout); each
// checks what can be checked before any layer is read (reference, presence,
// platform linux/amd64, compressed size) and pins the image to its digest.
// Builder.Build then flattens the layers (whiteouts applied) and streams the
// result into hcsshim's tar2ext4, which writes a compact read-only ext4
// without root or a loop device. The disk is written aside and renamed into
// the cache, so a digest already built costs a stat, and concurrent builds of
// one digest build it once.
//
// Errors about the image itself are *Error values with a Code, so that the
// API can answer with Lambda's shapes.
package rootfs
