# Written by provision for trust fleet: run as an administrator.
$ErrorActionPreference = 'Stop'
$store = New-Object System.Security.Cryptography.X509Certificates.X509Store('Root', 'LocalMachine')
$store.Open('ReadWrite')
$sha256 = [System.Security.Cryptography.SHA256]::Create()
function Get-Sha256($c) { ($sha256.ComputeHash($c.RawData) | ForEach-Object { $_.ToString('X2') }) -join '' }
$held = @{}
foreach ($c in $store.Certificates) { $held[(Get-Sha256 $c)] = $c }
if ($held.ContainsKey('9589AB783CF1263BE937C5C99A98725FB0EB473C5B8897EF385EFD15C84B61AC')) { $store.Remove($held['9589AB783CF1263BE937C5C99A98725FB0EB473C5B8897EF385EFD15C84B61AC']) }
# add CN=Golden Root CA,O=Golden Test
if (-not $held.ContainsKey('A3D9E8D42146948C121898CADDF25335C6A56390016285E7B06834798ED8A313')) { $c = New-Object System.Security.Cryptography.X509Certificates.X509Certificate2([Convert]::FromBase64String('MIIBtjCCAVugAwIBAgIUItRsHW/HVA3SYBGeSJbAKjNcl1wwCgYIKoZIzj0EAwIwLzEUMBIGA1UECgwLR29sZGVuIFRlc3QxFzAVBgNVBAMMDkdvbGRlbiBSb290IENBMCAXDTI2MTIwMzE4MjczMFoYDzIxMjYxMTA5MTgyNzMwWjAvMRQwEgYDVQQKDAtHb2xkZW4gVGVzdDEXMBUGA1UEAwwOR29sZGVuIFJvb3QgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQt3XR9gxtmdtx6lO27UaPhOjN3fTPbJEytH4DB/K5x0Zvf2zB7v7yF7th8jhOawaATMznq9DQUOHkwB0J3I4C5o1MwUTAdBgNVHQ4EFgQUFRcS6epcea5dWb4xGXcmdHQgVJcwHwYDVR0jBBgwFoAUFRcS6epcea5dWb4xGXcmdHQgVJcwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNJADBGAiEArAxHfv6aUvFMbugEOhGohHQa5gFkamutISsTGmg/mFcCIQDSa6uc7k6kPRkKzMv8Z9hn7QZtTEDhu2AjEXosR102sA==')); $c.FriendlyName = 'provision-fleet-a3d9e8d42146948c'; $store.Add($c) }
$store.Close()
