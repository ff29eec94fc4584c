package steps

// Where a plan puts things on a node.
const (
	EtcDir            = "/etc/ztwizard"
	SiteFilePath      = "/etc/ztwizard/site.yaml"
	NodeFilePath      = "/etc/ztwizard/node" // the node's name, one line
	CACertPath        = "/etc/ztwizard/ca.pem"
	CRLPath           = "/etc/ztwizard/crl.pem"
	TLSDir            = "/etc/ztwizard/tls" // SERVICE.crt and SERVICE.key
	NginxConfDir      = "/etc/nginx/conf.d" // ztwizard-SERVICE.conf
	SSHDropInPath     = "/etc/ssh/sshd_config.d/50-ztwizard.conf"
	SSHUserCAPath     = "/etc/ssh/ztwizard_user_ca.pub"
	SSHKRLPath        = "/etc/ssh/ztwizard_revoked.krl"
	SSHPrincipalsDir  = "/etc/ssh/auth_principals" // one file per local account
	SSHHostKeyPath    = "/etc/ssh/ssh_host_ed25519_key"
	SSHHostCertPath   = "/etc/ssh/ssh_host_ed25519_key-cert.pub"
	SSHKnownHostsPath = "/etc/ztwizard/ssh_known_hosts" // the @cert-authority line for clients
	WireGuardName     = "zt0"
	WireGuardKeyPath  = "/etc/ztwizard/wireguard/private.key"
	WireGuardConfDir  = "/etc/wireguard" // NAME.conf, wg-quick format
	NftablesPath      = "/etc/ztwizard/nftables.nft"
	SystemdDir        = "/etc/systemd/system"
)
