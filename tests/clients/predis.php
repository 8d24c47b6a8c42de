<?php
// Predis through the sessiond gateway: transaction(), WATCH with check-and-set and retries,
// pipelines and hashes. Prints "ok <checks>"; exits 1 on failure.
require_once getenv('PREDIS_AUTOLOADER') ?: '/usr/share/php/Predis/Autoloader.php';
Predis\Autoloader::register();

[$host, $port] = explode(':', getenv('SESSIOND_ADDR'));
$tag = getenv('KEY_TAG') ?: 'php';
function k($name) { global $tag; return '{' . $tag . '}:' . $name; }
$checks = 0;
function check($cond, $what) {
    global $checks;
    if (!$cond) { echo "FAIL $what\n"; exit(1); }
    $checks++;
}
function client() { global $host, $port; return new Predis\Client(['host' => $host, 'port' => (int)$port, 'read_write_timeout' => 10]); }

$r = client();
$r->del([k('a'), k('n'), k('c'), k('h')]);

$res = $r->transaction(function ($tx) {
    $tx->set(k('a'), '1');
    $tx->incr(k('n'));
    $tx->hmset(k('h'), ['f' => 'v']);
});
check(count($res) === 3 && (string)$res[0] === 'OK' && $res[1] === 1, 'transaction ' . json_encode($res));

// Check-and-set with WATCH, retried on conflicts: 3 clients x 20 increments, none lost.
$clients = [client(), client(), client()];
for ($i = 0; $i < 20; $i++) {
    foreach ($clients as $c) {
        $c->transaction(['watch' => k('c'), 'cas' => true, 'retry' => 100], function ($tx) {
            $v = (int)$tx->get(k('c'));
            $tx->multi();
            $tx->set(k('c'), $v + 1);
        });
    }
}
check($r->get(k('c')) === '60', 'cas increments ' . $r->get(k('c')));

// A conflicting write between WATCH and EXEC aborts (no retry).
$aborted = false;
try {
    $r->transaction(['watch' => k('c'), 'cas' => true, 'retry' => 0], function ($tx) {
        $tx->get(k('c'));
        client()->set(k('c'), 'theirs');
        $tx->multi();
        $tx->set(k('c'), 'mine');
    });
} catch (Predis\Transaction\AbortedMultiExecException $e) {
    $aborted = true;
}
check($aborted && $r->get(k('c')) === 'theirs', 'aborted cas');

$res = $r->pipeline(function ($p) {
    $p->get(k('a'));
    $p->hgetall(k('h'));
});
check($res[0] === '1' && $res[1] === ['f' => 'v'], 'pipeline ' . json_encode($res));

// A ScriptCommand: Predis sends EVALSHA, and EVAL when the server answers NOSCRIPT.
class ReleaseLock extends Predis\Command\ScriptCommand
{
    public function getKeysCount() { return 1; }
    public function getScript()
    {
        return "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";
    }
}
$r->getProfile()->defineCommand('releaselock', 'ReleaseLock');
$r->set(k('lock'), 'token-1');
check($r->releaselock(k('lock'), 'someone-else') === 0, 'foreign release refused');
check($r->get(k('lock')) === 'token-1', 'lock kept');
check($r->releaselock(k('lock'), 'token-1') === 1, 'own release');
check($r->exists(k('lock')) === 0, 'lock released');
check($r->eval("return {KEYS[1], ARGV[1], 3}", 1, k('x'), 'y') === [k('x'), 'y', 3], 'eval table');

echo "ok $checks\n";
