# Rendered by provision from acme.yml for host web-01: site "Default Web Site".
# Change the playbook or its template, not this file; the next apply would undo the edit.
#
# Puts the site into IIS from the files provision wrote:
#   1. imports each certificate's PKCS#12 into Cert:\LocalMachine\My, its password read from
#      an environment variable (never from this file), and takes its SHA-1 thumbprint;
#   2. binds each https binding in HTTP.sys to that thumbprint (netsh http sslcert; by
#      hostnameport= for SNI bindings, by ipport= otherwise);
#   3. copies each certificate's DER root into the certificates directory;
#   4. creates the application pool when missing, then replaces the site with the <site>
#      element of the XML file below (appcmd; the previous site is put back if that fails);
#   5. replaces the URL Rewrite rules named "provision: ..." (https redirects, proxied
#      directories), which need the URL Rewrite module (and ARR for proxying).
#   6. makes the ACME http-01 challenge folder, which the site serves at
#      /.well-known/acme-challenge/ (a virtual directory of the XML file below), with a
#      web.config that serves its extensionless files as text/plain and nothing else.
# Run it elevated, for example as the site's reload_command:
#   powershell -NoProfile -ExecutionPolicy Bypass -File <this file>
#Requires -RunAsAdministrator
Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'

$SiteName = 'Default Web Site'
$SiteId = 1
$SiteXml = 'C:\inetpub\provision\web.xml'
$AppPool = 'DefaultAppPool'
$CertificatesDir = 'C:\ProgramData\provision\certs'
# The application id IIS registers its HTTP.sys certificate bindings under.
$IisAppId = '{4dc3e181-e14b-4a21-b022-59fc669b0914}'

$Certificates = @(
    @{ Name = 'web'; Pfx = 'C:\ProgramData\provision\certs\web.pfx'; PasswordVariable = 'WEB_PFX_PASSWORD'; RootDer = $null }
)
$SslBindings = @(
    @{ Certificate = 'web'; Endpoint = 'ipport=0.0.0.0:443' }
)
$RewriteRules = @(
    @{ Name = 'provision: redirect *:80: to https'; Url = '^(?!\.well-known/acme-challenge/)(.*)$'; Action = 'Redirect'; Target = 'https://{SERVER_NAME}{REQUEST_URI}'; AppendQueryString = 'false'; Conditions = @(
        @{ Input = '{HTTPS}'; Pattern = '^OFF$' }
        @{ Input = '{SERVER_PORT}'; Pattern = '^80$' }
    ) }
)

function Invoke-Tool {
    # Runs a program; throws with its output when it fails, unless -AllowFailure.
    param([string]$Program, [string[]]$Arguments, [string]$InputText, [switch]$AllowFailure)
    $ErrorActionPreference = 'Continue'  # a program's stderr is output here, not an error
    if ($PSBoundParameters.ContainsKey('InputText')) {
        $output = $InputText | & $Program @Arguments 2>&1
    } else {
        $output = & $Program @Arguments 2>&1
    }
    $result = [pscustomobject]@{ ExitCode = $LASTEXITCODE; Output = ($output -join "`n") }
    if ($result.ExitCode -ne 0 -and -not $AllowFailure) {
        throw "$Program $($Arguments -join ' ') failed ($($result.ExitCode)): $($result.Output)"
    }
    return $result
}

$AppCmd = Join-Path $env:windir 'System32\inetsrv\appcmd.exe'
$Netsh = Join-Path $env:windir 'System32\netsh.exe'

# 1. Certificates.
$Thumbprints = @{}
foreach ($certificate in $Certificates) {
    $plain = [Environment]::GetEnvironmentVariable($certificate.PasswordVariable)
    if ($null -eq $plain) {
        throw "set the environment variable $($certificate.PasswordVariable) to the password of $($certificate.Pfx)"
    }
    $password = ConvertTo-SecureString -String $plain -AsPlainText -Force
    $imported = Import-PfxCertificate -FilePath $certificate.Pfx -CertStoreLocation 'Cert:\LocalMachine\My' -Password $password
    $leaf = $imported | Where-Object { $_.HasPrivateKey } | Select-Object -First 1
    if ($null -eq $leaf) {
        throw "$($certificate.Pfx) holds no certificate with its private key"
    }
    $Thumbprints[$certificate.Name] = $leaf.Thumbprint
    Write-Output "certificate $($certificate.Name): $($leaf.Thumbprint)"

    # 3. The DER root, where clients of this host look for it.
    if ($null -ne $certificate.RootDer) {
        $destination = Join-Path $CertificatesDir (Split-Path -Leaf $certificate.RootDer)
        if ([IO.Path]::GetFullPath($certificate.RootDer) -ne [IO.Path]::GetFullPath($destination)) {
            Copy-Item -LiteralPath $certificate.RootDer -Destination $destination -Force
        }
    }
}

# 2. HTTP.sys bindings, by thumbprint.
foreach ($binding in $SslBindings) {
    Invoke-Tool $Netsh @('http', 'delete', 'sslcert', $binding.Endpoint) -AllowFailure | Out-Null
    Invoke-Tool $Netsh @('http', 'add', 'sslcert', $binding.Endpoint,
        "certhash=$($Thumbprints[$binding.Certificate])", "appid=$IisAppId",
        'certstorename=MY') | Out-Null
}

# 4. The application pool and the site.
if ((Invoke-Tool $AppCmd @('list', 'apppool', $AppPool) -AllowFailure).ExitCode -ne 0) {
    Invoke-Tool $AppCmd @('add', 'apppool', "/name:$AppPool") | Out-Null
}
[xml]$document = Get-Content -LiteralPath $SiteXml -Raw
$envelope = '<?xml version="1.0" encoding="UTF-8"?><appcmd><SITE SITE.NAME="{0}" SITE.ID="{1}">{2}</SITE></appcmd>' -f [Security.SecurityElement]::Escape($SiteName), $SiteId, $document.site.OuterXml
$previous = $null
if ((Invoke-Tool $AppCmd @('list', 'site', $SiteName) -AllowFailure).ExitCode -eq 0) {
    $previous = (Invoke-Tool $AppCmd @('list', 'site', $SiteName, '/config', '/xml')).Output
    Invoke-Tool $AppCmd @('delete', 'site', $SiteName) | Out-Null
}
try {
    Invoke-Tool $AppCmd @('add', 'site', '/in') -InputText $envelope | Out-Null
} catch {
    if ($null -ne $previous) {
        Invoke-Tool $AppCmd @('add', 'site', '/in') -InputText $previous -AllowFailure | Out-Null
    }
    throw
}

# 5. URL Rewrite rules.
Import-Module WebAdministration
$AppHost = 'MACHINE/WEBROOT/APPHOST'
$Rules = 'system.webServer/rewrite/rules'
$rewriteInstalled = $null -ne (Get-WebGlobalModule -Name 'RewriteModule' -ErrorAction SilentlyContinue)
if ($RewriteRules.Count -gt 0 -and -not $rewriteInstalled) {
    throw "site $SiteName needs the IIS URL Rewrite module for its redirects and proxied directories"
}
if ($rewriteInstalled) {
    $owned = @(Get-WebConfigurationProperty -PSPath $AppHost -Location $SiteName -Filter "$Rules/rule" -Name 'name' |
        ForEach-Object { $_.Value } | Where-Object { $_ -like 'provision: *' })
    foreach ($name in $owned) {
        Remove-WebConfigurationProperty -PSPath $AppHost -Location $SiteName -Filter $Rules -Name '.' -AtElement @{ name = $name }
    }
    foreach ($rule in $RewriteRules) {
        $at = "$Rules/rule[@name='$($rule.Name)']"
        Add-WebConfigurationProperty -PSPath $AppHost -Location $SiteName -Filter $Rules -Name '.' -Value @{ name = $rule.Name; stopProcessing = 'True' }
        Set-WebConfigurationProperty -PSPath $AppHost -Location $SiteName -Filter "$at/match" -Name 'url' -Value $rule.Url
        foreach ($condition in $rule.Conditions) {
            Add-WebConfigurationProperty -PSPath $AppHost -Location $SiteName -Filter "$at/conditions" -Name '.' -Value @{ input = $condition.Input; pattern = $condition.Pattern }
        }
        Set-WebConfigurationProperty -PSPath $AppHost -Location $SiteName -Filter "$at/action" -Name '.' -Value @{ type = $rule.Action; url = $rule.Target; appendQueryString = $rule.AppendQueryString }
        if ($rule.Action -eq 'Redirect') {
            Set-WebConfigurationProperty -PSPath $AppHost -Location $SiteName -Filter "$at/action" -Name 'redirectType' -Value 'Permanent'
        }
    }
    if (@($RewriteRules | Where-Object { $_.Action -eq 'Rewrite' }).Count -gt 0) {
        if ($null -eq (Get-WebGlobalModule -Name 'ApplicationRequestRouting' -ErrorAction SilentlyContinue)) {
            throw "site $SiteName proxies directories, which needs IIS Application Request Routing (ARR)"
        }
        Set-WebConfigurationProperty -PSPath $AppHost -Filter 'system.webServer/proxy' -Name 'enabled' -Value 'True'
    }
}

# 6. The ACME http-01 challenge folder: provision writes each order's tokens there and
#    removes them afterwards; IIS serves a file without an extension only when told to.
$Challenge = 'C:\ProgramData\provision\certs\.acme-challenge'
New-Item -ItemType Directory -Force -Path $Challenge | Out-Null
$ChallengeConfig = @'
<?xml version="1.0" encoding="utf-8"?>
<configuration>
    <system.webServer>
        <staticContent>
            <clear />
            <mimeMap fileExtension="." mimeType="text/plain" />
        </staticContent>
        <handlers>
            <clear />
            <add name="StaticFile" path="*" verb="GET,HEAD" modules="StaticFileModule" resourceType="File" requireAccess="Read" />
        </handlers>
        <directoryBrowse enabled="false" />
    </system.webServer>
</configuration>
'@
[IO.File]::WriteAllText((Join-Path $Challenge 'web.config'), $ChallengeConfig, (New-Object Text.UTF8Encoding $false))
Write-Output "site ${SiteName}: applied"
