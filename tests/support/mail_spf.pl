#!/usr/bin/perl
# Perl's Mail::SPF (Debian's libmail-spf-perl, what qpsmtpd 0.94's sender_permitted_from
# uses) as the independent SPF evaluator of the SPF tests; see tests/support/mail_spf.py.
#   mail_spf.pl NAMESERVER [PORT]
# reads one case a line on stdin, "SCOPE<TAB>IDENTITY<TAB>IP<TAB>HELO" (SCOPE: mfrom or helo),
# and answers each with one line, "RESULT<TAB>TEXT" (TEXT: the local explanation, tabs and
# line ends made spaces), flushed at once: a long-running process for many cases.
use strict;
use warnings;
use Mail::SPF;
use Net::DNS::Resolver;

my ($nameserver, $port) = @ARGV;
die "usage: mail_spf.pl NAMESERVER [PORT]\n" unless defined $nameserver;
my $resolver = Net::DNS::Resolver->new(
    nameservers => [$nameserver], port => $port || 53, recurse => 1,
    udp_timeout => 5, tcp_timeout => 5, retry => 2, dnsrch => 0, defnames => 0);
my $server = Mail::SPF::Server->new(dns_resolver => $resolver, hostname => 'receiver.example');
$| = 1;
while (my $line = <STDIN>) {
    chomp $line;
    my ($scope, $identity, $ip, $helo) = split /\t/, $line, -1;
    my ($code, $text);
    eval {
        my $request = Mail::SPF::Request->new(
            versions => [1], scope => $scope, identity => $identity, ip_address => $ip,
            ($helo ne '' ? (helo_identity => $helo) : ()));
        my $result = $server->process($request);
        ($code, $text) = ($result->code, $result->local_explanation);
        1;
    } or do {
        my $error = $@;
        ($code, $text) = ('exception', ref($error) ? "$error" : $error);
    };
    $text = '' unless defined $text;
    $text =~ s/[\t\r\n]+/ /g;
    print "$code\t$text\n";
}
