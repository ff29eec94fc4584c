// Package nft is the typed model of ztwizard's one nftables table, inet
// ztwizard: named sets (plain, interval and concatenated), base chains with
// hooks, priorities and policies, and rules made of typed matches.
//
// A Table renders two ways that give the same kernel state: as nft text
// (Text, and Script for `nft -f`) and as one netlink batch (Apply: built
// with google/nftables, sent in one sendmsg). Text is what `nft list table
// inet ztwizard` prints for the table. Fingerprint digests the table as the
// kernel holds it, so that a later apply can tell it unchanged without
// listing it.
// Neither path touches any other table.
package nft
