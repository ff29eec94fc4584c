// Package nft is the typed model of ztwizard's nftables table (inet
// ztwizard), rendered two ways: as nft text and as netlink messages.
package nft

// Table is the inet ztwizard table.
type Table struct{}
