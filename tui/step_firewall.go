package tui

import "ztwizard/steps"

// firewallPage describes the host firewall's site-wide settings.
func firewallPage(*model) *formPage {
	ports := newText("Public TCP ports", "Ports open to everyone, separated by spaces: your services' ports, e.g. 80 443. SSH is never public.",
		"firewall.public_tcp", numbers(func(s *steps.Site) *[]int { return &s.Firewall.PublicTCP })).
		withHint(func(*env) string { return "none" })
	ports.also = publicPortProblem
	return newFormPage(stepFirewall,
		"Each node drops what is not allowed. Always let in: WireGuard, SSH from the admin networks "+
			"and the mesh, each database from its clients.",
		ports,
		newText("ICMP rate", "Pings and ICMP errors let through, e.g. 10/second or 600/minute.",
			"firewall.icmp_rate", text(func(s *steps.Site) *string { return &s.Firewall.ICMPRate })).
			withHint(func(*env) string { return steps.DefaultICMPRate + " (default)" }),
	)
}
