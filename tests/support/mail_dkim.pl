#!/usr/bin/perl
# Perl's Mail::DKIM (Debian's libmail-dkim-perl) as the tests' independent DKIM signer and
# verifier; see tests/support/mail_dkim.py. The message (CRLF) comes on stdin.
#   mail_dkim.pl sign KEYFILE DOMAIN SELECTOR METHOD [LENGTH]  -> the DKIM-Signature line
#   mail_dkim.pl verify NAMESERVER -> "RESULT DOMAIN DETAIL" per signature, then "overall R"
use strict;
use warnings;
use Mail::DKIM::Signer;
use Mail::DKIM::Verifier;
use Mail::DKIM::Signature;
use Net::DNS::Resolver;

binmode STDIN;
my $mode = shift @ARGV;
my $dkim;
if ($mode eq 'sign') {
    my ($keyfile, $domain, $selector, $method, $length) = @ARGV;
    $dkim = Mail::DKIM::Signer->new(
        Policy => sub {
            my $signer = shift;
            my $sig = Mail::DKIM::Signature->new(
                Algorithm => 'rsa-sha256', Method => $method, Domain => $domain,
                Selector => $selector, Headers => $signer->headers);
            $sig->body_count($length) if defined $length;
            $signer->add_signature($sig);
            return;
        },
        KeyFile => $keyfile);
} elsif ($mode eq 'verify') {
    Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(
        nameservers => [$ARGV[0]], recurse => 1, udp_timeout => 5, tcp_timeout => 5));
    $dkim = Mail::DKIM::Verifier->new();
} else {
    die "usage: mail_dkim.pl sign|verify ...\n";
}
while (<STDIN>) { $dkim->PRINT($_); }
$dkim->CLOSE;
if ($mode eq 'sign') {
    print $dkim->signature->as_string, "\n";
} else {
    foreach my $sig ($dkim->signatures) {
        printf "%s %s %s\n", $sig->result, $sig->domain, $sig->result_detail;
    }
    printf "overall %s\n", $dkim->result;
}
