// Package image bakes bootable appliance images from plans: a Debian root
// filesystem (built once with mmdebstrap, slimmed to what a node reads,
// and cached by suite and package set), the plan's files written into it
// with the same root-directory applier as `apply --root`, an ext4 root
// made by mkfs.ext4, a GPT disk
// with a FAT32 EFI system partition holding a unified kernel image (written
// with go-diskfs), and a qcow2 made by qemu-img.
//
// It also writes and reads the cloud-init NoCloud seeds that turn a golden
// image into one node, runs a node's first boot (host keys, WireGuard key,
// the seed's files) and checks a booted node (the self-check).
//
// Bakes are reproducible: the same rootfs cache, inputs and epoch give a
// byte-identical image.
package image
